//! The state directory.
//!
//! ```text
//! <state-dir>/           0711: the agent may reach artifacts/ and helper.pub, not list
//!   helper-key.pk8       the helper's Ed25519 key, PKCS#8 DER, 0600, created on first start
//!   helper.pub           its public key, base64url + '\n', 0644 (what the agent verifies with)
//!   agent-sequence       the last accepted agent_sequence, decimal, 0600 (see `ledger`)
//!   policy.json          the agent's policy in force, {"policy_version","policy_hash"}, 0600
//!                        (see `policy`)
//!   executions.jsonl     the execution journal, append-only, 0600 (see `ledger`)
//!   recorded.jsonl       the recording executor's record, unless --record names another file
//!   artifacts/           screenshots and log bundles, kx_<n>.<ext>, owned by the agent's user
//! ```

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use crate::error::HelperError;
use crate::keys;
use crate::platform;

/// File names inside the state directory.
pub mod files {
    /// The helper's private key.
    pub const HELPER_KEY: &str = "helper-key.pk8";
    /// The helper's public key.
    pub const HELPER_PUB: &str = "helper.pub";
    /// The agent_sequence high-water mark.
    pub const AGENT_SEQUENCE: &str = "agent-sequence";
    /// The execution journal.
    pub const EXECUTIONS: &str = "executions.jsonl";
    /// The recording executor's default record file.
    pub const RECORDED: &str = "recorded.jsonl";
    /// The artifacts directory.
    pub const ARTIFACTS: &str = "artifacts";
}

/// The opened state directory with the helper's key loaded.
#[derive(Debug)]
pub struct StateDir {
    root: PathBuf,
    key: SigningKey,
}

impl StateDir {
    /// Opens (creating if needed) the state directory and the helper key, and (re)writes
    /// `helper.pub` when it does not hold the key's public half.
    pub fn open(root: &Path) -> Result<Self, HelperError> {
        platform::create_dir(root, 0o711).map_err(|e| HelperError::io(root, e))?;
        let key = keys::load_or_create_signing_key(&root.join(files::HELPER_KEY))?;
        let public = key.verifying_key().to_bytes();
        let pub_path = root.join(files::HELPER_PUB);
        if keys::read_public_key_file(&pub_path).ok() != Some(public) {
            keys::write_public_key_file(&pub_path, &public)?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            key,
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The helper's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    #[cfg_attr(not(unix), allow(dead_code))] // the Unix server signs with it; Windows comes later
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

/// Where artifacts of a state directory go.
pub fn artifacts_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(files::ARTIFACTS)
}
