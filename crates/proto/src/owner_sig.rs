//! Owner signatures: what a PC's owner signs so that the PC, not the server, decides
//! whether a command (or a change of the owner's keys) really comes from its owner.
//!
//! A **statement** is a small JSON object whose RFC 8785 canonical form is what is signed
//! (docs/protocol.md section 6.11):
//!
//! - the **command statement** `{"command_id","device_id","method","not_after","params",
//!   "type":"tether.command.v1"}` binds a command to one device, one command id (the
//!   user's `message_id`), its method, its exact parameters and a deadline, so a
//!   signature cannot be moved to another PC, another command or altered parameters, nor
//!   used after `not_after`;
//! - the **owner-keys statement** (`"type":"tether.owner_keys.v1"`, [`OwnerKeysStatement`])
//!   adds or removes pinned owner keys; a PC applies it only when a key it already pins
//!   signed it.
//!
//! A [`UserSig`] is one signature over a statement: an Ed25519 signature by the CLI's key
//! over the canonical bytes, or a WebAuthn assertion (ES256) whose clientData
//! `challenge` is [`webauthn_challenge`] of the canonical bytes. This module defines the
//! shapes, their validation and the Ed25519 side; the agent verifies both kinds against
//! the keys it pinned.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::canonical::canonicalize;
use crate::clock::UnixMillis;
use crate::error::ProtoError;
use crate::ids::{KeyId, MessageId};
use crate::messages::command::Method;
use crate::messages::discovery::OwnerKey;
use crate::validate::{self, Validate, b64url_decode, b64url_encode};

/// `type` of the command statement.
pub const COMMAND_STATEMENT_TYPE: &str = "tether.command.v1";
/// `type` of the owner-keys statement.
pub const OWNER_KEYS_STATEMENT_TYPE: &str = "tether.owner_keys.v1";
/// `OwnerKey.kind` of an Ed25519 key (the CLI's).
pub const KIND_ED25519: &str = "ed25519";
/// `OwnerKey.kind` of a WebAuthn ES256 credential (a passkey).
pub const KIND_WEBAUTHN_ES256: &str = "webauthn-es256";
/// The WebAuthn clientData `type` of an assertion.
pub const WEBAUTHN_GET: &str = "webauthn.get";
/// At most this many approvals ride with one command.
pub const MAX_APPROVALS: usize = 8;
/// An owner-keys statement adds or removes at most this many keys.
pub const MAX_KEY_CHANGES: usize = 16;
/// The longest a signed statement may stay valid: the protocol's longest TTL (7 days)
/// plus the 60 s clock skew every receiver allows.
pub const MAX_STATEMENT_LIFETIME_MS: u64 = 7 * 24 * 3600 * 1000 + 60_000;

/// The canonical command statement: the bytes an owner signs for one command.
///
/// `{"command_id":…,"device_id":…,"method":…,"not_after":…,"params":{…},"type":"tether.command.v1"}`
/// in RFC 8785 form. `params` must be a JSON object (an empty one when the method takes
/// none); it is signed exactly as it will be delivered.
pub fn command_statement(
    command_id: &MessageId,
    device_id: &str,
    method: Method,
    params: &Value,
    not_after: UnixMillis,
) -> Result<Vec<u8>, ProtoError> {
    if !params.is_object() {
        return Err(ProtoError::invalid("params", "must be a JSON object"));
    }
    let v = json!({
        "type": COMMAND_STATEMENT_TYPE,
        "command_id": command_id.as_str(),
        "device_id": device_id,
        "method": method,
        "params": params,
        "not_after": not_after.0,
    });
    Ok(canonicalize(&v)?.into_bytes())
}

/// The WebAuthn challenge for a statement: unpadded base64url of SHA-256 of its
/// canonical bytes (the `challenge` member of the assertion's clientDataJSON).
pub fn webauthn_challenge(statement: &[u8]) -> String {
    b64url_encode(&Sha256::digest(statement))
}

/// One signature over a statement, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum UserSig {
    /// An Ed25519 signature (the CLI's key).
    #[serde(rename = "ed25519")]
    Ed25519(Ed25519Sig),
    /// A WebAuthn assertion by an ES256 passkey.
    #[serde(rename = "webauthn-es256")]
    WebauthnEs256(WebauthnSig),
}

/// `{"kind":"ed25519","kid","sig"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ed25519Sig {
    /// The signing key's id: [`KeyId::for_ed25519`] of its public key.
    pub kid: String,
    /// Ed25519 signature over the canonical statement, b64url(64).
    pub sig: String,
}

/// `{"kind":"webauthn-es256","kid","authenticator_data","client_data_json","signature"}`:
/// a WebAuthn assertion, each member as the authenticator returned it, in unpadded
/// base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebauthnSig {
    /// The credential id (base64url; at most 48 bytes so that it fits a key id).
    pub kid: String,
    /// The authenticator data (37..=1024 bytes).
    pub authenticator_data: String,
    /// The clientDataJSON bytes (1..=2048 bytes).
    pub client_data_json: String,
    /// The ECDSA P-256 signature over authenticatorData ‖ SHA-256(clientDataJSON),
    /// ASN.1 DER as WebAuthn returns it (8..=72 bytes).
    pub signature: String,
}

/// Where a [`UserSig`]'s members sit, for error messages (`body.user_sig.sig`, …).
#[derive(Debug, Clone, Copy)]
pub struct SigPaths {
    /// `kid`.
    pub kid: &'static str,
    /// `sig` (Ed25519).
    pub sig: &'static str,
    /// `authenticator_data`.
    pub authenticator_data: &'static str,
    /// `client_data_json`.
    pub client_data_json: &'static str,
    /// `signature` (WebAuthn).
    pub signature: &'static str,
}

macro_rules! sig_paths {
    ($name:ident, $prefix:literal) => {
        #[doc = concat!("Paths under `", $prefix, "`.")]
        pub const $name: SigPaths = SigPaths {
            kid: concat!($prefix, ".kid"),
            sig: concat!($prefix, ".sig"),
            authenticator_data: concat!($prefix, ".authenticator_data"),
            client_data_json: concat!($prefix, ".client_data_json"),
            signature: concat!($prefix, ".signature"),
        };
    };
}

sig_paths!(BODY_USER_SIG, "body.user_sig");
sig_paths!(BODY_APPROVALS, "body.approvals[]");
sig_paths!(USER_SIG, "user_sig");

impl UserSig {
    /// The signing key's id.
    pub fn kid(&self) -> &str {
        match self {
            UserSig::Ed25519(s) => &s.kid,
            UserSig::WebauthnEs256(s) => &s.kid,
        }
    }

    /// The `OwnerKey.kind` of the key that must have made it.
    pub fn kind(&self) -> &'static str {
        match self {
            UserSig::Ed25519(_) => KIND_ED25519,
            UserSig::WebauthnEs256(_) => KIND_WEBAUTHN_ES256,
        }
    }

    /// Checks every member's shape and size (not the signature).
    pub fn validate_at(&self, p: SigPaths) -> Result<(), ProtoError> {
        kid(p.kid, self.kid())?;
        match self {
            UserSig::Ed25519(s) => validate::b64_len(p.sig, &s.sig, 64),
            UserSig::WebauthnEs256(s) => {
                if b64url_decode(&s.kid).is_none_or(|b| b.is_empty()) {
                    return Err(ProtoError::invalid(
                        p.kid,
                        "a credential id in unpadded base64url",
                    ));
                }
                b64_between(p.authenticator_data, &s.authenticator_data, 37, 1024)?;
                b64_between(p.client_data_json, &s.client_data_json, 1, 2048)?;
                b64_between(p.signature, &s.signature, 8, 72)
            }
        }
    }
}

fn kid(field: &'static str, s: &str) -> Result<(), ProtoError> {
    KeyId::parse(s)
        .map(|_| ())
        .map_err(|_| ProtoError::invalid(field, "1..=64 of A-Z a-z 0-9 . _ : -"))
}

fn b64_between(field: &'static str, s: &str, min: usize, max: usize) -> Result<(), ProtoError> {
    // Checked before decoding, so a huge string costs nothing.
    if s.len() > max.saturating_mul(4).div_ceil(3) {
        return Err(ProtoError::invalid(
            field,
            format!("longer than {max} bytes encoded"),
        ));
    }
    match b64url_decode(s) {
        Some(b) if (min..=max).contains(&b.len()) => Ok(()),
        Some(b) => Err(ProtoError::invalid(
            field,
            format!("decodes to {} bytes, expected {min}..={max}", b.len()),
        )),
        None => Err(ProtoError::invalid(field, "not unpadded base64url")),
    }
}

/// Signs a statement with an Ed25519 owner key.
pub fn sign_ed25519(key: &SigningKey, statement: &[u8]) -> UserSig {
    UserSig::Ed25519(Ed25519Sig {
        kid: KeyId::for_ed25519(key.verifying_key().as_bytes()).to_string(),
        sig: b64url_encode(&key.sign(statement).to_bytes()),
    })
}

/// Verifies an Ed25519 owner signature strictly (RFC 8032 with the checks of
/// `verify_strict`): `public_key` is the pinned key's 32 raw bytes.
pub fn verify_ed25519(public_key: &[u8], statement: &[u8], sig: &Ed25519Sig) -> bool {
    let Ok(raw) = <[u8; 32]>::try_from(public_key) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&raw) else {
        return false;
    };
    let Some(sig) = b64url_decode(&sig.sig)
        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
        .map(|b| Signature::from_bytes(&b))
    else {
        return false;
    };
    key.verify_strict(statement, &sig).is_ok()
}

/// Checks an [`OwnerKey`]'s shape: `kid` a key id, `kind` one of the two kinds,
/// `public_key` base64url of 32 bytes (Ed25519) or of a SubjectPublicKeyInfo DER of
/// 1..=384 bytes (WebAuthn; the agent checks it is a P-256 key when it pins it).
pub fn validate_owner_key(
    k: &OwnerKey,
    kid_path: &'static str,
    kind_path: &'static str,
    key_path: &'static str,
) -> Result<(), ProtoError> {
    kid(kid_path, &k.kid)?;
    match k.kind.as_str() {
        KIND_ED25519 => {
            validate::b64_len(key_path, &k.public_key, 32)?;
            if b64url_decode(&k.public_key)
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .is_some_and(|raw| KeyId::for_ed25519(&raw).as_str() != k.kid)
            {
                return Err(ProtoError::invalid(
                    kid_path,
                    "an ed25519 key's kid is the first 8 bytes of SHA-256 of the key, in hex",
                ));
            }
            Ok(())
        }
        KIND_WEBAUTHN_ES256 => {
            if b64url_decode(&k.kid).is_none_or(|b| b.is_empty()) {
                return Err(ProtoError::invalid(
                    kid_path,
                    "a credential id in unpadded base64url",
                ));
            }
            b64_between(key_path, &k.public_key, 1, 384)
        }
        _ => Err(ProtoError::invalid(
            kind_path,
            "must be ed25519 or webauthn-es256",
        )),
    }
}

/// A change of the owner keys pinned on the owner's PCs, signed by a key already pinned
/// there (docs/protocol.md section 6.12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerKeysStatement {
    /// Always [`OWNER_KEYS_STATEMENT_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The owner (informational: the agent checks the signer, not the name).
    pub user_id: String,
    /// Only this PC; absent: every PC that pins the signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Strictly increasing per PC (the signer's clock in ms is a fine choice): a PC
    /// refuses a statement not above the last one it applied, so an old one cannot be
    /// replayed over a newer one.
    pub version: u64,
    /// Keys to pin.
    pub add: Vec<OwnerKey>,
    /// Key ids to unpin.
    pub remove: Vec<String>,
    /// The statement is void after this instant (UnixMillis).
    pub not_after: UnixMillis,
}

impl OwnerKeysStatement {
    /// Its canonical bytes: what is signed.
    pub fn canonical(&self) -> Result<Vec<u8>, ProtoError> {
        Ok(crate::canonical::to_canonical_vec(self)?)
    }

    /// Checks the shape under `prefix` paths (`statement.…` or `body.statement.…`).
    pub fn validate_at(&self, body: bool) -> Result<(), ProtoError> {
        let (t, user, dev, version, add, kid, kind, key, remove) = if body {
            (
                "body.statement.type",
                "body.statement.user_id",
                "body.statement.device_id",
                "body.statement.version",
                "body.statement.add",
                "body.statement.add[].kid",
                "body.statement.add[].kind",
                "body.statement.add[].public_key",
                "body.statement.remove",
            )
        } else {
            (
                "statement.type",
                "statement.user_id",
                "statement.device_id",
                "statement.version",
                "statement.add",
                "statement.add[].kid",
                "statement.add[].kind",
                "statement.add[].public_key",
                "statement.remove",
            )
        };
        if self.kind != OWNER_KEYS_STATEMENT_TYPE {
            return Err(ProtoError::invalid(t, "must be tether.owner_keys.v1"));
        }
        validate::text(user, &self.user_id, 1, 64)?;
        if let Some(d) = &self.device_id {
            validate::text(dev, d, 1, 64)?;
        }
        validate::range(version, self.version, 1, crate::canonical::MAX_SAFE_INTEGER)?;
        validate::max_items(add, &self.add, MAX_KEY_CHANGES)?;
        validate::max_items(remove, &self.remove, MAX_KEY_CHANGES)?;
        if self.add.is_empty() && self.remove.is_empty() {
            return Err(ProtoError::invalid(add, "nothing to add or remove"));
        }
        for k in &self.add {
            validate_owner_key(k, kid, kind, key)?;
        }
        for r in &self.remove {
            self::kid(remove, r)?;
        }
        Ok(())
    }
}

/// gateway → agent: a signed change of the owner keys (`owner_keys_update`), relayed by
/// the server from `POST /api/me/keys`. The agent applies it only if `user_sig` verifies
/// with a key it pins now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerKeysUpdate {
    /// What changes.
    pub statement: OwnerKeysStatement,
    /// A pinned key's signature over the statement's canonical bytes.
    pub user_sig: UserSig,
}

impl Validate for OwnerKeysUpdate {
    fn validate(&self) -> Result<(), ProtoError> {
        self.statement.validate_at(true)?;
        self.user_sig.validate_at(BODY_USER_SIG)
    }
}

#[cfg(test)]
mod tests;
