//! The owner's keys this PC pins, and the check that makes a compromised server
//! powerless over it: a command runs only if a pinned owner key signed its statement
//! (docs/protocol.md section 6.11), and the pinned set changes only through a statement
//! signed by a key pinned already (section 6.12) or by pairing again in front of the PC.
//!
//! Two kinds of key are pinned: `ed25519` (the CLI's key, 32 raw bytes) and
//! `webauthn-es256` (a passkey: a P-256 SubjectPublicKeyInfo, under its credential id).
//! For a passkey the signature is a WebAuthn assertion: its clientData must say
//! `webauthn.get`, carry as `challenge` the base64url SHA-256 of the statement and come
//! from the server's origin (the URL this PC paired with), and its authenticator data
//! must hash the server's host as the RP id and have the user-present and
//! user-verified flags set. The signature counter is not checked (the agent keeps no
//! per-credential state; the command id already makes every statement single-use).

use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::DecodePublicKey as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tether_proto::messages::discovery::{KeyRole, OwnerKey};
use tether_proto::owner_sig::{
    self, KIND_ED25519, KIND_WEBAUTHN_ES256, OwnerKeysStatement, UserSig, WEBAUTHN_GET, WebauthnSig,
};
use tether_proto::validate::b64url_decode;
use tether_proto::{KeyId, UnixMillis};

/// WebAuthn authenticator-data flag: the user was present.
pub const FLAG_UP: u8 = 0x01;
/// WebAuthn authenticator-data flag: the user was verified (PIN, biometric).
pub const FLAG_UV: u8 = 0x04;

/// Why an owner signature was refused (all of them are `2011 OWNER_SIGNATURE_INVALID`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerSigError {
    /// The command carries no owner signature at all.
    #[error("the command is not signed by its owner")]
    Missing,
    /// No pinned key of that kind has that kid (for a command or an owner-keys
    /// statement: no pinned *owner* key; an approver key signs approvals only).
    #[error("no owner key {kind} {kid:?} is pinned on this PC")]
    UnknownKey {
        /// The signature's kind.
        kind: &'static str,
        /// The signature's kid.
        kid: String,
    },
    /// The signature does not verify with the pinned key.
    #[error("the owner signature by {0:?} does not verify")]
    BadSignature(String),
    /// The WebAuthn clientData or authenticator data is not acceptable.
    #[error("the passkey assertion by {kid:?} is refused: {why}")]
    Assertion {
        /// The credential id.
        kid: String,
        /// What is wrong.
        why: String,
    },
    /// Fewer distinct approvers than required signed the command.
    #[error("{got} of the {required} approvals required verify with pinned keys")]
    Approvals {
        /// Valid approvals by distinct keys.
        got: usize,
        /// Approvals required.
        required: u32,
    },
}

/// The WebAuthn relying party the agent expects assertions for: the server it paired
/// with (its public URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    /// The origin clientData must name, `https://host[:port]`.
    pub origin: String,
    /// The RP id whose SHA-256 the authenticator data must carry: the host.
    pub rp_id: String,
}

impl RelyingParty {
    /// The relying party of a server URL (`https://host[:port][/…]`).
    pub fn for_server(server_url: &str) -> Self {
        let rest = server_url.strip_prefix("https://").unwrap_or(server_url);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or_default();
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or_default()
        } else {
            authority.split(':').next().unwrap_or_default()
        };
        Self {
            origin: format!("https://{}", authority.to_ascii_lowercase()),
            rp_id: host.to_ascii_lowercase(),
        }
    }
}

/// A pinned key, parsed.
#[derive(Debug, Clone)]
enum Verifying {
    Ed25519([u8; 32]),
    Es256(Box<p256::ecdsa::VerifyingKey>),
}

#[derive(Debug, Clone)]
struct Pinned {
    key: OwnerKey,
    verifying: Verifying,
}

/// Parses an owner key for pinning: a 32-byte Ed25519 key under its derived kid, or a
/// P-256 SubjectPublicKeyInfo under a base64url credential id.
pub fn parse_owner_key(k: &OwnerKey) -> Result<(), String> {
    pin(k).map(|_| ())
}

fn pin(k: &OwnerKey) -> Result<Pinned, String> {
    owner_sig::validate_owner_key(k, "kid", "kind", "public_key").map_err(|e| e.to_string())?;
    let raw = b64url_decode(&k.public_key).ok_or("public_key is not base64url")?;
    let verifying = match k.kind.as_str() {
        KIND_ED25519 => {
            let raw: [u8; 32] = raw
                .as_slice()
                .try_into()
                .map_err(|_| "an ed25519 key is 32 bytes")?;
            ed25519_dalek::VerifyingKey::from_bytes(&raw)
                .map_err(|_| "not an ed25519 public key")?;
            if KeyId::for_ed25519(&raw).as_str() != k.kid {
                return Err("the kid is not the key's".into());
            }
            Verifying::Ed25519(raw)
        }
        KIND_WEBAUTHN_ES256 => Verifying::Es256(Box::new(
            p256::ecdsa::VerifyingKey::from_public_key_der(&raw)
                .map_err(|_| "not a P-256 SubjectPublicKeyInfo")?,
        )),
        other => return Err(format!("unknown key kind {other:?}")),
    };
    Ok(Pinned {
        key: k.clone(),
        verifying,
    })
}

/// The owner keys pinned on this PC and the relying party passkey assertions are for.
#[derive(Debug, Clone)]
pub struct OwnerTrust {
    pinned: Vec<Pinned>,
    rp: RelyingParty,
    version: u64,
}

impl OwnerTrust {
    /// The trust of a paired device: its pinned keys (a key that does not parse is
    /// skipped with a warning, and can never verify anything) and its server.
    pub fn new(keys: &[OwnerKey], server_url: &str) -> Self {
        let pinned = keys
            .iter()
            .filter_map(|k| match pin(k) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(kid = %k.kid, error = %e, "a pinned owner key is unusable");
                    None
                }
            })
            .collect();
        Self {
            pinned,
            rp: RelyingParty::for_server(server_url),
            version: 0,
        }
    }

    /// The same trust, its last applied owner-keys statement being `version`.
    pub fn at_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// The version of the last owner-keys statement applied (0: none).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The keys pinned now.
    pub fn keys(&self) -> Vec<OwnerKey> {
        self.pinned.iter().map(|p| p.key.clone()).collect()
    }

    /// Verifies `sig` over `statement` with a pinned **owner** key (a command, or a change
    /// of the pinned keys: an approver key signs neither); returns that key's kid.
    pub fn verify(&self, statement: &[u8], sig: &UserSig) -> Result<String, OwnerSigError> {
        self.verify_as(statement, sig, true)
    }

    /// Verifies `sig` with a pinned key, an owner key only when `owner_only`.
    fn verify_as(
        &self,
        statement: &[u8],
        sig: &UserSig,
        owner_only: bool,
    ) -> Result<String, OwnerSigError> {
        let pinned = self
            .pinned
            .iter()
            .find(|p| {
                p.key.kind == sig.kind()
                    && p.key.kid == sig.kid()
                    && (!owner_only || p.key.role == KeyRole::Owner)
            })
            .ok_or_else(|| OwnerSigError::UnknownKey {
                kind: sig.kind(),
                kid: sig.kid().to_owned(),
            })?;
        let ok = match (&pinned.verifying, sig) {
            (Verifying::Ed25519(pk), UserSig::Ed25519(s)) => {
                owner_sig::verify_ed25519(pk, statement, s)
            }
            (Verifying::Es256(pk), UserSig::WebauthnEs256(s)) => {
                self.check_assertion(pk, statement, s)?;
                true
            }
            _ => false,
        };
        if ok {
            Ok(pinned.key.kid.clone())
        } else {
            Err(OwnerSigError::BadSignature(sig.kid().to_owned()))
        }
    }

    /// Checks a WebAuthn assertion over `statement`: clientData, authenticator data,
    /// then the ES256 signature.
    fn check_assertion(
        &self,
        key: &p256::ecdsa::VerifyingKey,
        statement: &[u8],
        s: &WebauthnSig,
    ) -> Result<(), OwnerSigError> {
        let refuse = |why: &str| OwnerSigError::Assertion {
            kid: s.kid.clone(),
            why: why.to_owned(),
        };
        let client_data =
            b64url_decode(&s.client_data_json).ok_or_else(|| refuse("clientDataJSON"))?;
        let auth_data =
            b64url_decode(&s.authenticator_data).ok_or_else(|| refuse("authenticatorData"))?;
        let signature = b64url_decode(&s.signature).ok_or_else(|| refuse("signature"))?;
        let cd: Value = serde_json::from_slice(&client_data)
            .map_err(|_| refuse("clientDataJSON is not JSON"))?;
        if cd.get("type").and_then(Value::as_str) != Some(WEBAUTHN_GET) {
            return Err(refuse("clientData type is not webauthn.get"));
        }
        if cd.get("challenge").and_then(Value::as_str)
            != Some(owner_sig::webauthn_challenge(statement).as_str())
        {
            return Err(refuse("the challenge is not this command's"));
        }
        if cd.get("origin").and_then(Value::as_str) != Some(self.rp.origin.as_str()) {
            return Err(refuse("the origin is not the server's"));
        }
        if cd.get("crossOrigin").and_then(Value::as_bool) == Some(true) {
            return Err(refuse("a cross-origin assertion"));
        }
        let (rp_id_hash, flags) = match (auth_data.get(..32), auth_data.get(32)) {
            (Some(h), Some(f)) if auth_data.len() >= 37 => (h, *f),
            _ => return Err(refuse("authenticatorData is too short")),
        };
        if rp_id_hash != Sha256::digest(self.rp.rp_id.as_bytes()).as_slice() {
            return Err(refuse("the rpIdHash is not the server's RP id"));
        }
        if flags & FLAG_UP == 0 {
            return Err(refuse("the user-present flag is clear"));
        }
        if flags & FLAG_UV == 0 {
            return Err(refuse("the user-verified flag is clear"));
        }
        let sig = p256::ecdsa::Signature::from_der(&signature)
            .or_else(|e| {
                if signature.len() == 64 {
                    p256::ecdsa::Signature::from_slice(&signature)
                } else {
                    Err(e)
                }
            })
            .map_err(|_| refuse("the signature is not ECDSA DER"))?;
        let mut signed = auth_data;
        signed.extend_from_slice(&Sha256::digest(&client_data));
        key.verify(&signed, &sig)
            .map_err(|_| OwnerSigError::BadSignature(s.kid.clone()))
    }

    /// Checks approvals: at least `required` of them verify with distinct pinned keys
    /// (owner or approver keys) other than `signer` (the key that signed the command
    /// itself).
    pub fn check_approvals(
        &self,
        statement: &[u8],
        signer: &str,
        approvals: &[UserSig],
        required: u32,
    ) -> Result<(), OwnerSigError> {
        let mut seen: Vec<String> = Vec::new();
        for a in approvals {
            if let Ok(kid) = self.verify_as(statement, a, false)
                && kid != signer
                && !seen.contains(&kid)
            {
                seen.push(kid);
            }
        }
        if seen.len() >= usize::try_from(required).unwrap_or(usize::MAX) {
            Ok(())
        } else {
            Err(OwnerSigError::Approvals {
                got: seen.len(),
                required,
            })
        }
    }

    /// Applies a signed owner-keys statement for `device_id` at `now`, after the version
    /// check the caller did: the signature must verify with a key pinned now. Returns
    /// the new key set (not yet in force: the caller persists it, then installs it).
    pub fn apply(
        &self,
        device_id: &str,
        statement: &OwnerKeysStatement,
        sig: &UserSig,
        now: UnixMillis,
    ) -> Result<Vec<OwnerKey>, KeysRefusal> {
        statement
            .validate_at(true)
            .map_err(|e| KeysRefusal::Invalid(e.to_string()))?;
        if statement.version <= self.version {
            return Err(KeysRefusal::Replay {
                got: statement.version,
                last: self.version,
            });
        }
        if statement
            .device_id
            .as_deref()
            .is_some_and(|d| d != device_id)
        {
            return Err(KeysRefusal::Invalid(
                "the statement is for another device".into(),
            ));
        }
        if statement.not_after < now {
            return Err(KeysRefusal::Expired);
        }
        let bytes = statement
            .canonical()
            .map_err(|e| KeysRefusal::Invalid(e.to_string()))?;
        self.verify(&bytes, sig).map_err(KeysRefusal::Signature)?;
        let mut keys: Vec<OwnerKey> = self
            .keys()
            .into_iter()
            .filter(|k| !statement.remove.contains(&k.kid))
            .collect();
        for k in &statement.add {
            pin(k).map_err(KeysRefusal::Invalid)?;
            keys.retain(|old| old.kid != k.kid);
            keys.push(k.clone());
        }
        if keys.len() > 16 {
            return Err(KeysRefusal::Invalid("more than 16 owner keys".into()));
        }
        if !keys.iter().any(|k| k.role == KeyRole::Owner) {
            return Err(KeysRefusal::Invalid(
                "removing every owner key would lock the owner out; pair again instead".into(),
            ));
        }
        Ok(keys)
    }

    /// The same trust with another key set, at `version`.
    pub fn with_keys(&self, keys: &[OwnerKey], version: u64) -> Self {
        let mut t = Self::new(keys, "");
        t.rp = self.rp.clone();
        t.version = version;
        t
    }
}

/// Why an owner-keys statement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysRefusal {
    /// Not signed by a pinned key (`2011`).
    #[error(transparent)]
    Signature(OwnerSigError),
    /// Past its `not_after` (`2004`).
    #[error("the statement has expired")]
    Expired,
    /// Not above the last version applied (`2006`).
    #[error("version {got} is not above the last applied {last}")]
    Replay {
        /// The statement's version.
        got: u64,
        /// The last applied.
        last: u64,
    },
    /// Malformed, for another device, or it would leave no key (`1005`).
    #[error("{0}")]
    Invalid(String),
    /// The new key set could not be saved (`9001`); nothing changed.
    #[error("the new owner keys could not be saved: {0}")]
    Storage(String),
}

impl KeysRefusal {
    /// The stable code reported to the server.
    pub fn code(&self) -> tether_proto::ErrorCode {
        use tether_proto::ErrorCode;
        match self {
            KeysRefusal::Signature(_) => ErrorCode::OwnerSignatureInvalid,
            KeysRefusal::Expired => ErrorCode::TtlExpired,
            KeysRefusal::Replay { .. } => ErrorCode::SequenceReplay,
            KeysRefusal::Invalid(_) => ErrorCode::InvalidField,
            KeysRefusal::Storage(_) => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests;
