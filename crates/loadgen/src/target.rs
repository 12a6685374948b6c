//! The server under test, as its ready file describes it, and the gateway keys its
//! frames are verified with.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tether_proto::validate::b64url_decode;
use tether_proto::{Clock, KeyId, Payload, StaticKeys, Verifier};

use crate::LoadError;

/// Where the server listens and which root CA it chains to.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https://localhost:<port>`.
    pub url: String,
    /// The root CA (PEM): the only trust anchor the load generator uses.
    pub ca_pem: String,
}

impl Target {
    /// Reads the JSON file `tether-server --ready-file` writes once it listens.
    pub fn from_ready_file(path: &Path) -> Result<Target, LoadError> {
        #[derive(Deserialize)]
        struct Ready {
            public_url: String,
            ca_pem: String,
        }
        let bytes = std::fs::read(path).map_err(LoadError::io(format!(
            "reading the ready file {}",
            path.display()
        )))?;
        let r: Ready = serde_json::from_slice(&bytes)
            .map_err(|e| LoadError::Format(format!("ready file {}: {e}", path.display())))?;
        Ok(Target {
            url: r.public_url,
            ca_pem: r.ca_pem,
        })
    }
}

/// One of the gateway's envelope keys, as `GET /api/gateway/keys` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayKey {
    /// Key id, as in envelope headers.
    pub kid: String,
    /// Ed25519 public key, unpadded base64url.
    pub public_key: String,
}

/// The verifier key set for the gateway's keys.
pub fn gateway_key_set(keys: &[GatewayKey]) -> Result<StaticKeys, LoadError> {
    let mut set = StaticKeys::new();
    for k in keys {
        let kid = KeyId::parse(&k.kid)
            .map_err(|e| LoadError::Format(format!("gateway key id {:?}: {e}", k.kid)))?;
        let raw: [u8; 32] = b64url_decode(&k.public_key)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| LoadError::Format(format!("gateway key {} is not 32 bytes", k.kid)))?;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .map_err(|_| LoadError::Format(format!("gateway key {} is not Ed25519", k.kid)))?;
        set.insert(kid, vk);
    }
    Ok(set)
}

/// Verifies a frame the gateway signed; an `error` frame becomes an error.
pub fn verify_gateway_frame(
    frame: &[u8],
    keys: &StaticKeys,
    clock: &dyn Clock,
) -> Result<Payload, LoadError> {
    match verify_gateway_payload(frame, keys, clock)? {
        Payload::Error(e) => Err(LoadError::Protocol(format!(
            "the gateway refused: {} {}: {}",
            e.code.number(),
            e.code.name(),
            e.message
        ))),
        p => Ok(p),
    }
}

/// Verifies a frame the gateway signed and returns its payload, an `error` frame's too.
pub fn verify_gateway_payload(
    frame: &[u8],
    keys: &StaticKeys,
    clock: &dyn Clock,
) -> Result<Payload, LoadError> {
    Ok(Verifier::new(keys, clock).verify(frame)?.payload)
}
