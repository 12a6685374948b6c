//! The keys on either side of the IPC link, as files.
//!
//! A public key file (`agent.pub` in the agent's state directory, `helper.pub` in the
//! helper's) holds the 32 raw bytes of an Ed25519 public key as unpadded base64url and one
//! line feed. The helper's private key is `helper-key.pk8` (PKCS#8 DER, owner-only),
//! created on first start.

use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use tether_proto::validate::{b64url_decode, b64url_encode};

use crate::error::HelperError;
use crate::platform;
use crate::random;

/// The largest public key file accepted (a key is 43 characters; room for whitespace).
const MAX_PUBLIC_KEY_FILE: u64 = 1024;

/// Reads a public key file (`helper.pub`, `agent.pub`): unpadded base64url of 32 bytes,
/// surrounding whitespace ignored. The key must be a valid Ed25519 point.
pub fn read_public_key_file(path: &Path) -> Result<[u8; 32], HelperError> {
    let meta = std::fs::metadata(path).map_err(|e| HelperError::io(path, e))?;
    if meta.len() > MAX_PUBLIC_KEY_FILE {
        return Err(corrupt(path, "too large for a public key file"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| HelperError::io(path, e))?;
    parse_public_key(text.trim()).map_err(|reason| corrupt(path, reason))
}

/// Parses unpadded base64url of a 32-byte Ed25519 public key.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = b64url_decode(text).ok_or("not unpadded base64url")?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "not 32 bytes (an Ed25519 public key)")?;
    VerifyingKey::from_bytes(&key).map_err(|_| "not a valid Ed25519 public key")?;
    Ok(key)
}

/// The text of a public key file: base64url and a line feed.
pub fn public_key_file_text(key: &[u8; 32]) -> String {
    format!("{}\n", b64url_encode(key))
}

/// Writes a public key file atomically, readable by everyone (it is public).
pub fn write_public_key_file(path: &Path, key: &[u8; 32]) -> Result<(), HelperError> {
    platform::write_atomic(path, public_key_file_text(key).as_bytes(), 0o644)
        .map_err(|e| HelperError::io(path, e))
}

/// Loads the helper's signing key from `path`, or creates one there (owner-only) if the
/// file does not exist.
pub(crate) fn load_or_create_signing_key(path: &Path) -> Result<SigningKey, HelperError> {
    match std::fs::read(path) {
        Ok(der) => {
            // A key someone else could read is no longer only ours: tighten and say so.
            if let Ok(Some(mode)) = mode_of(path)
                && mode & 0o077 != 0
            {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "helper key was readable by others; set to 0600");
                platform::set_mode(path, 0o600).map_err(|e| HelperError::io(path, e))?;
            }
            SigningKey::from_pkcs8_der(&der).map_err(|e| corrupt(path, e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::from_bytes(&random::bytes::<32>());
            let der = key
                .to_pkcs8_der()
                .map_err(|e| HelperError::Config(format!("cannot encode the helper key: {e}")))?;
            platform::write_atomic(path, der.as_bytes(), 0o600)
                .map_err(|e| HelperError::io(path, e))?;
            tracing::info!(path = %path.display(), "created the helper key");
            Ok(key)
        }
        Err(e) => Err(HelperError::io(path, e)),
    }
}

#[cfg(unix)]
fn mode_of(path: &Path) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    Ok(Some(std::fs::metadata(path)?.permissions().mode() & 0o777))
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> std::io::Result<Option<u32>> {
    Ok(None)
}

fn corrupt(path: &Path, reason: impl Into<String>) -> HelperError {
    HelperError::CorruptState {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn public_key_files_round_trip_and_refuse_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
        let p = dir.path().join("agent.pub");
        write_public_key_file(&p, &key).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.ends_with('\n') && text.len() == 44, "{text:?}");
        assert_eq!(read_public_key_file(&p).unwrap(), key);

        std::fs::write(&p, "not base64!").unwrap();
        assert!(read_public_key_file(&p).is_err());
        std::fs::write(&p, b64url_encode(&[1; 31])).unwrap();
        assert!(read_public_key_file(&p).is_err());
        std::fs::write(&p, format!("{}=", b64url_encode(&key))).unwrap();
        assert!(read_public_key_file(&p).is_err(), "padding is refused");
    }

    #[test]
    fn the_signing_key_is_created_once_and_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("helper-key.pk8");
        let a = load_or_create_signing_key(&p).unwrap();
        let b = load_or_create_signing_key(&p).unwrap();
        assert_eq!(a.verifying_key(), b.verifying_key());
        #[cfg(unix)]
        assert_eq!(mode_of(&p).unwrap(), Some(0o600));
    }
}
