//! Flow 0 (discovery) and flow 1 (pairing): how an unknown PC becomes a trusted one.

use serde::{Deserialize, Serialize};

use crate::clock::UnixMillis;
use crate::error::ProtoError;
use crate::validate::{self, Validate};

/// The operating system family of a PC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OsFamily {
    /// Windows 10/11 (the primary platform).
    Windows,
    /// Linux.
    Linux,
}

/// agent → gateway, the first frame on an unauthenticated WSS connection.
/// Signed with the agent's own key (`AgentPub`); `header.kid` is that key's [`crate::KeyId`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryHello {
    /// SHA-256 (lowercase hex) of the hardware id; the raw id is not sent until pairing.
    pub hwid_hash: String,
    /// 32 random bytes, unpadded base64url.
    pub nonce: String,
    /// The agent's version (e.g. `0.1.0`).
    pub agent_version: String,
    /// SHA-256 (lowercase hex) of the agent's binary manifest.
    pub agent_manifest_hash: String,
    /// The agent's Ed25519 public key, 32 bytes, unpadded base64url.
    pub agent_pub: String,
    /// The PC's OS family.
    pub os: OsFamily,
}

impl Validate for DiscoveryHello {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::sha256_hex("body.hwid_hash", &self.hwid_hash)?;
        validate::b64_len("body.nonce", &self.nonce, 32)?;
        validate::text("body.agent_version", &self.agent_version, 1, 32)?;
        validate::sha256_hex("body.agent_manifest_hash", &self.agent_manifest_hash)?;
        validate::b64_len("body.agent_pub", &self.agent_pub, 32)
    }
}

/// gateway → agent, the answer to [`DiscoveryHello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryChallenge {
    /// A short-lived JWT (token type `challenge`) binding the hello's nonce and key.
    pub challenge_token: String,
    /// Where the agent continues: the base URL of `POST /api/discovery/confirm`.
    pub pair_init_url: String,
    /// When the challenge token expires.
    pub expires_at: UnixMillis,
}

impl Validate for DiscoveryChallenge {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("body.challenge_token", &self.challenge_token, 16, 4096)?;
        validate::https_url("body.pair_init_url", &self.pair_init_url)
    }
}

/// The domain-separation prefix of the discovery proof (see [`DiscoveryConfirm`]).
pub const DISCOVERY_PROOF_CONTEXT: &[u8] = b"TETHER-DISCOVERY-V1\n";

/// The bytes an agent signs to prove it holds `AgentPub`:
/// `"TETHER-DISCOVERY-V1\n"` followed by the challenge token's ASCII bytes.
pub fn discovery_proof_input(challenge_token: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        DISCOVERY_PROOF_CONTEXT
            .len()
            .saturating_add(challenge_token.len()),
    );
    v.extend_from_slice(DISCOVERY_PROOF_CONTEXT);
    v.extend_from_slice(challenge_token.as_bytes());
    v
}

/// Body of `POST /api/discovery/confirm` (agent → api).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfirm {
    /// The token from [`DiscoveryChallenge`].
    pub challenge_token: String,
    /// Ed25519 signature by `AgentPub` over [`discovery_proof_input`], unpadded base64url.
    pub nonce_signature: String,
}

impl Validate for DiscoveryConfirm {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("challenge_token", &self.challenge_token, 16, 4096)?;
        validate::b64_len("nonce_signature", &self.nonce_signature, 64)
    }
}

/// Body of `POST /api/pair/request` (agent → api).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairRequest {
    /// The `challenge_token` of a discovery session this agent confirmed: pairing is only
    /// open to an agent that completed discovery with the same `agent_pub`.
    pub challenge_token: String,
    /// A name the owner will recognise (e.g. the hostname).
    pub device_name: String,
    /// The raw hardware id (hashed by the server before it is stored).
    pub hwid: String,
    /// The agent's Ed25519 public key, 32 bytes, unpadded base64url.
    pub agent_pub: String,
    /// PKCS#10 CSR (PEM) for the device's TLS key (ECDSA P-256 or Ed25519).
    pub csr_pem: String,
    /// The PC's OS family.
    pub os: OsFamily,
}

impl Validate for PairRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("challenge_token", &self.challenge_token, 16, 4096)?;
        validate::text("device_name", &self.device_name, 1, 64)?;
        validate::text("hwid", &self.hwid, 1, 256)?;
        validate::b64_len("agent_pub", &self.agent_pub, 32)?;
        if self.csr_pem.len() > 8192 || !self.csr_pem.contains("BEGIN CERTIFICATE REQUEST") {
            return Err(ProtoError::invalid(
                "csr_pem",
                "not a PEM certificate request of at most 8 KiB",
            ));
        }
        Ok(())
    }
}

/// Answer to `POST /api/pair/request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairResponse {
    /// The new device's id.
    pub device_id: String,
    /// An opaque single-use token (32 random bytes, unpadded base64url) bound to
    /// `AgentPub`, valid for 5 minutes. The server stores only its SHA-256.
    pub pair_token: String,
    /// The https URL the QR code encodes; it opens the confirm page with the token.
    pub pair_url: String,
    /// When the pair token expires.
    pub expires_at: UnixMillis,
}

impl Validate for PairResponse {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("device_id", &self.device_id, 1, 64)?;
        validate::text("pair_token", &self.pair_token, 16, 4096)?;
        validate::https_url("pair_url", &self.pair_url)
    }
}

/// Body of `POST /api/pair/confirm` (owner's client → api).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairConfirm {
    /// The token read from the QR code.
    pub pair_token: String,
}

impl Validate for PairConfirm {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("pair_token", &self.pair_token, 16, 4096)
    }
}

/// A public key of the owner that the agent pins at pairing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerKey {
    /// The key's id.
    pub kid: String,
    /// `ed25519` (CLI key) or `webauthn-es256` (passkey; SPKI DER, base64url).
    pub kind: String,
    /// The public key, unpadded base64url.
    pub public_key: String,
    /// What the key may sign on this PC (absent: `owner`).
    #[serde(default, skip_serializing_if = "KeyRole::is_owner")]
    pub role: KeyRole,
}

/// What a pinned key may sign (docs/protocol.md section 6.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// The owner's key: signs commands, approvals and owner-keys statements.
    #[default]
    Owner,
    /// Someone the owner trusts to approve: signs approvals only, never a command or a
    /// change of the pinned keys.
    Approver,
}

impl KeyRole {
    /// Whether this is [`KeyRole::Owner`] (the default, left out of the JSON).
    pub fn is_owner(&self) -> bool {
        *self == KeyRole::Owner
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Owner => "owner",
            KeyRole::Approver => "approver",
        }
    }
}

/// gateway → agent after the owner confirmed pairing: the device certificate and the
/// owner keys to pin. Signed by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceActivate {
    /// The device id.
    pub device_id: String,
    /// The device's certificate (PEM), issued by the intermediate from the CSR.
    pub device_cert_pem: String,
    /// Intermediate then root certificate (PEM).
    pub ca_chain_pem: Vec<String>,
    /// The owner's public keys to pin.
    pub owner_keys: Vec<OwnerKey>,
}

impl Validate for DeviceActivate {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("body.device_id", &self.device_id, 1, 64)?;
        validate::max_items("body.ca_chain_pem", &self.ca_chain_pem, 4)?;
        validate::max_items("body.owner_keys", &self.owner_keys, 16)?;
        for k in &self.owner_keys {
            validate::text("body.owner_keys[].kid", &k.kid, 1, 64)?;
            if k.kind != "ed25519" && k.kind != "webauthn-es256" {
                return Err(ProtoError::invalid(
                    "body.owner_keys[].kind",
                    "must be ed25519 or webauthn-es256",
                ));
            }
            validate::text("body.owner_keys[].public_key", &k.public_key, 1, 512)?;
        }
        Ok(())
    }
}

/// The domain-separation prefix of the activation proof (see [`PairActivate`]).
pub const PAIR_ACTIVATE_CONTEXT: &[u8] = b"TETHER-PAIR-ACTIVATE-V1\n";

/// The bytes an agent signs to collect its certificate:
/// `"TETHER-PAIR-ACTIVATE-V1\n"` followed by the pair token's ASCII bytes.
pub fn pair_activate_input(pair_token: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(PAIR_ACTIVATE_CONTEXT.len().saturating_add(pair_token.len()));
    v.extend_from_slice(PAIR_ACTIVATE_CONTEXT);
    v.extend_from_slice(pair_token.as_bytes());
    v
}

/// Body of `POST /api/pair/activate` (agent → api): the agent polls with it until the
/// owner has confirmed, then receives its certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairActivate {
    /// The pair token from [`PairResponse`].
    pub pair_token: String,
    /// The agent's Ed25519 public key; must be the one the token is bound to.
    pub agent_pub: String,
    /// Ed25519 signature by `agent_pub` over [`pair_activate_input`], unpadded base64url.
    pub signature: String,
}

impl Validate for PairActivate {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::text("pair_token", &self.pair_token, 16, 4096)?;
        validate::b64_len("agent_pub", &self.agent_pub, 32)?;
        validate::b64_len("signature", &self.signature, 64)
    }
}

/// The short number both the PC and the owner's client show after pairing, so the owner
/// can see they paired the PC in front of them: the first 4 bytes of
/// SHA-256(`"TETHER-PAIR-SAS-V1\n"` ‖ pair_token ‖ `"\n"` ‖ agent_pub ‖ `"\n"` ‖ owner_key)
/// as a big-endian integer, modulo 1,000,000, written as two groups of three digits
/// (`"042 917"`). `owner_key` is the owner's MobilePub (base64url) or, for an account
/// without one, the user id.
pub fn pairing_code(pair_token: &str, agent_pub: &str, owner_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"TETHER-PAIR-SAS-V1\n");
    h.update(pair_token.as_bytes());
    h.update(b"\n");
    h.update(agent_pub.as_bytes());
    h.update(b"\n");
    h.update(owner_key.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 4];
    first.copy_from_slice(d.get(..4).unwrap_or(&[0; 4]));
    let n = u32::from_be_bytes(first) % 1_000_000;
    format!("{:03} {:03}", n / 1000, n % 1000)
}
