//! Flow 7 on the PC: the policy bundle in force, kept from one `policy_update` to the
//! next and across restarts.
//!
//! Until the server sends one, the agent enforces the built-in bundle
//! (`tether_policy::builtin()`, version 0) compiled into it. A `policy_update` is taken in
//! only when its envelope verifies with a pinned gateway key (the session checks that,
//! with its TTL and sequence, before handing it here; a hash that does not match the
//! bundle already fails there with `1005`), its bundle is a valid policy (else `4005`)
//! and its version is above the one in force (else `4006`). The **signed frame itself**
//! is then written to `policy.bin` in the state directory, AES-256-GCM under the offline
//! queue's key (`queue.key`, owner-only), before the new bundle is put in force; at
//! start-up the frame is decrypted and verified again (signature with the pinned keys,
//! body, bundle), so a file that was swapped or damaged is never believed. Its envelope
//! TTL is long past by then: the re-check takes the frame at its own `iat`, which the
//! signature covers.
//!
//! The bundle in force is shared through a watch channel: the command executor checks
//! every command against the newest one just before calling the helper, and tells the
//! helper its hash (see `commands::policy`).

use std::sync::Arc;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use serde_json::Value;
use tether_policy::Policy;
use tether_proto::messages::notify::PolicyUpdate;
use tether_proto::{ErrorCode, MessageType, StaticKeys, UnixMillis, Verified, Verifier};
use tokio::sync::watch;

use crate::error::AgentError;
use crate::random;
use crate::state::StateDir;
use crate::wire::FrozenClock;

/// The signed `policy_update` in force, encrypted, in the state directory.
pub const POLICY_FILE: &str = "policy.bin";
const AAD: &[u8] = b"tether-agent-policy-v1\n";

/// A policy bundle the agent enforces.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Its version (0: the built-in bundle).
    pub version: u64,
    /// Its `policy_hash`: SHA-256 of the canonical bundle.
    pub hash: String,
    /// The rules.
    pub policy: Policy,
}

impl Bundle {
    /// The built-in bundle (version 0) every agent starts with.
    pub fn builtin() -> Result<Self, AgentError> {
        let bundle = tether_policy::builtin();
        let hash = PolicyUpdate::hash_bundle(&bundle)?;
        let policy = Policy::from_value(&bundle)
            .map_err(|e| AgentError::Protocol(format!("the built-in policy: {e}")))?;
        Ok(Self {
            version: 0,
            hash,
            policy,
        })
    }
}

/// Why a `policy_update` was not taken in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    /// The bundle is not a valid policy (`4005`).
    #[error("the policy bundle is invalid: {0}")]
    Invalid(String),
    /// Not above the version in force (`4006`).
    #[error("policy version {got} is not above version {current} in force")]
    Rollback {
        /// The update's version.
        got: u64,
        /// The version in force.
        current: u64,
    },
    /// It could not be stored (`6001`-like: our own trouble); nothing changed.
    #[error("the policy could not be stored: {0}")]
    Storage(String),
}

impl PolicyRefusal {
    /// The stable code reported to the server.
    pub fn code(&self) -> ErrorCode {
        match self {
            PolicyRefusal::Invalid(_) => ErrorCode::PolicyBundleInvalid,
            PolicyRefusal::Rollback { .. } => ErrorCode::PolicyVersionRollback,
            PolicyRefusal::Storage(_) => ErrorCode::Internal,
        }
    }
}

/// The bundle in force and where it is kept.
pub struct LocalPolicy {
    state: StateDir,
    cipher: Aes256Gcm,
    tx: watch::Sender<Arc<Bundle>>,
}

impl std::fmt::Debug for LocalPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.current();
        f.debug_struct("LocalPolicy")
            .field("version", &b.version)
            .field("hash", &b.hash)
            .finish_non_exhaustive()
    }
}

impl LocalPolicy {
    /// Opens the policy of a state directory: the stored bundle if it decrypts and
    /// verifies with the device's pinned gateway keys, else the built-in one (with a
    /// warning when a stored one was refused).
    pub fn open(state: &StateDir) -> Result<Self, AgentError> {
        let (key, _) = crate::queue::load_or_create_key(state)?;
        let cipher = Aes256Gcm::new_from_slice(key.as_slice())
            .map_err(|_| AgentError::Crypto("the queue key is not 32 bytes".into()))?;
        let mut bundle = Bundle::builtin()?;
        if let Some(sealed) = state.read_optional(POLICY_FILE)? {
            match load_sealed(state, &cipher, &sealed) {
                Ok(b) => bundle = b,
                Err(e) => {
                    tracing::warn!(error = %e, "the stored policy is refused; enforcing the built-in one until the server sends the policy again");
                    say!(
                        "warning: the stored policy bundle is refused ({e}); enforcing the \
                         built-in policy until the server sends it again"
                    );
                }
            }
        }
        Ok(Self {
            state: state.clone(),
            cipher,
            tx: watch::Sender::new(Arc::new(bundle)),
        })
    }

    /// The bundle in force.
    pub fn current(&self) -> Arc<Bundle> {
        self.tx.borrow().clone()
    }

    /// Follows the bundle in force.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Bundle>> {
        self.tx.subscribe()
    }

    /// Takes in a verified `policy_update` (`v`, read from `frame`): checks it, stores the
    /// signed frame, then puts the bundle in force. Returns the new bundle.
    pub fn accept(&self, frame: &[u8], v: Verified) -> Result<Arc<Bundle>, PolicyRefusal> {
        let update: PolicyUpdate = v
            .into_body()
            .map_err(|e| PolicyRefusal::Invalid(e.to_string()))?;
        let bundle = checked(&update)?;
        let current = self.current();
        if bundle.version <= current.version {
            return Err(PolicyRefusal::Rollback {
                got: bundle.version,
                current: current.version,
            });
        }
        let sealed = self
            .seal(frame)
            .map_err(|e| PolicyRefusal::Storage(e.to_string()))?;
        self.state
            .write_atomic(POLICY_FILE, &sealed, true)
            .map_err(|e| PolicyRefusal::Storage(e.to_string()))?;
        let bundle = Arc::new(bundle);
        self.tx.send_replace(Arc::clone(&bundle));
        Ok(bundle)
    }

    fn seal(&self, frame: &[u8]) -> Result<Vec<u8>, AgentError> {
        let nonce = random::bytes::<12>();
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: frame,
                    aad: AAD,
                },
            )
            .map_err(|_| AgentError::Crypto("encrypting the policy failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }
}

/// The bundle of a decoded update, if it is a valid policy.
fn checked(update: &PolicyUpdate) -> Result<Bundle, PolicyRefusal> {
    let policy =
        Policy::from_value(&update.bundle).map_err(|e| PolicyRefusal::Invalid(e.to_string()))?;
    Ok(Bundle {
        version: update.policy_version,
        hash: update.policy_hash.clone(),
        policy,
    })
}

/// Decrypts and re-verifies the stored frame.
fn load_sealed(state: &StateDir, cipher: &Aes256Gcm, sealed: &[u8]) -> Result<Bundle, String> {
    let (nonce, ct) = sealed.split_at_checked(12).ok_or("the file is too short")?;
    let frame = cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: AAD })
        .map_err(|_| "it does not decrypt with this PC's key".to_owned())?;
    let keys = match state.device().map_err(|e| e.to_string())? {
        Some(d) => {
            crate::wire::gateway_key_set(&d.record.gateway_keys).map_err(|e| e.to_string())?
        }
        None => return Err("this PC is not paired".into()),
    };
    let bundle = reverify(&frame, &keys).map_err(|e| e.to_string())?;
    Ok(bundle)
}

/// Verifies a stored `policy_update` frame again: signature by a pinned gateway key,
/// header and body, as of the frame's own `iat` (its TTL is long past).
pub fn reverify(frame: &[u8], keys: &StaticKeys) -> Result<Bundle, AgentError> {
    let iat = serde_json::from_slice::<Value>(frame)
        .ok()
        .and_then(|v| v.pointer("/header/iat").and_then(Value::as_u64))
        .ok_or_else(|| AgentError::Protocol("the stored policy frame has no iat".into()))?;
    let v = Verifier::new(keys, &FrozenClock(UnixMillis(iat))).verify(frame)?;
    if v.header.msg_type != MessageType::PolicyUpdate {
        return Err(AgentError::Protocol(format!(
            "the stored policy frame is a {}",
            v.header.msg_type.name()
        )));
    }
    let update: PolicyUpdate = v.into_body()?;
    checked(&update).map_err(|e| AgentError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests;
