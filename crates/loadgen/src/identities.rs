//! The identities file: the device keys and certificates [`crate::enroll`] obtained,
//! which [`crate::connect`] presents. Benchmark material only: the keys belong to
//! throw-away devices of a throw-away server, and the file is written owner-only.

use std::path::Path;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use tether_client::ClientIdentity;
use tether_proto::validate::{b64url_decode, b64url_encode};

use crate::LoadError;
use crate::target::GatewayKey;

/// The file's format version.
pub const VERSION: u32 = 1;

/// Everything `connect` needs for a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    /// [`VERSION`].
    pub version: u32,
    /// The server the devices were paired with.
    pub server_url: String,
    /// The gateway's envelope keys (from activation), to verify `connected`.
    pub gateway_keys: Vec<GatewayKey>,
    /// The paired devices.
    pub devices: Vec<DeviceIdentity>,
    /// The owner of every device, when `enroll` registered it (and so holds its key):
    /// what `connect --command-senders` logs in and signs commands with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerIdentity>,
}

/// The owner account the devices were paired to, and its command-signing key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerIdentity {
    /// The account's email.
    pub email: String,
    /// Its password.
    pub password: String,
    /// The owner key's Ed25519 secret (32 bytes, unpadded base64url): its public half was
    /// registered as `mobile_pub`.
    pub key: String,
    /// The owner keys the devices pinned at activation (`device_activate.owner_keys`):
    /// what the simulated agents verify `user_sig` with.
    pub pinned: Vec<tether_proto::messages::discovery::OwnerKey>,
}

impl std::fmt::Debug for OwnerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerIdentity")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl OwnerIdentity {
    /// The owner's signing key.
    pub fn signing_key(&self) -> Result<SigningKey, LoadError> {
        let raw: [u8; 32] = b64url_decode(&self.key)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| LoadError::Format("the owner key is not 32 bytes".into()))?;
        Ok(SigningKey::from_bytes(&raw))
    }
}

/// One paired device.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceIdentity {
    /// The device id the server assigned.
    pub device_id: String,
    /// The Ed25519 secret key (32 bytes, unpadded base64url).
    pub key: String,
    /// The device certificate (PEM).
    pub cert_pem: String,
    /// The intermediate CA that issued it (PEM).
    pub intermediate_pem: String,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

impl DeviceIdentity {
    /// A device identity from its key and what activation returned.
    pub fn new(
        device_id: String,
        key: &SigningKey,
        cert_pem: String,
        intermediate_pem: String,
    ) -> Self {
        Self {
            device_id,
            key: b64url_encode(key.as_bytes()),
            cert_pem,
            intermediate_pem,
        }
    }

    /// The device's signing key.
    pub fn signing_key(&self) -> Result<SigningKey, LoadError> {
        let raw: [u8; 32] = b64url_decode(&self.key)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                LoadError::Format(format!("device {}: key is not 32 bytes", self.device_id))
            })?;
        Ok(SigningKey::from_bytes(&raw))
    }

    /// The TLS client identity: the device certificate, its intermediate and the key.
    pub fn client_identity(&self, key: &SigningKey) -> Result<ClientIdentity, LoadError> {
        let leaf = tether_client::first_cert_der(&self.cert_pem)?;
        let intermediate = tether_client::first_cert_der(&self.intermediate_pem)?;
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|e| LoadError::Format(format!("encoding the device key: {e}")))?;
        Ok(ClientIdentity {
            chain: vec![
                CertificateDer::from(leaf),
                CertificateDer::from(intermediate),
            ],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec())),
        })
    }
}

impl IdentityFile {
    /// Writes the file, readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), LoadError> {
        let body = serde_json::to_vec(self).map_err(|e| LoadError::Format(e.to_string()))?;
        let what = format!("writing {}", path.display());
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(LoadError::io(what.clone()))?;
        std::io::Write::write_all(&mut f, &body).map_err(LoadError::io(what))
    }

    /// Reads a file [`IdentityFile::write`] wrote.
    pub fn read(path: &Path) -> Result<IdentityFile, LoadError> {
        let bytes =
            std::fs::read(path).map_err(LoadError::io(format!("reading {}", path.display())))?;
        let f: IdentityFile = serde_json::from_slice(&bytes)
            .map_err(|e| LoadError::Format(format!("{}: {e}", path.display())))?;
        if f.version != VERSION {
            return Err(LoadError::Format(format!(
                "{}: version {} (expected {VERSION})",
                path.display(),
                f.version
            )));
        }
        Ok(f)
    }
}
