//! The owner's signature on a command, as the server handles it: carried, never trusted.
//!
//! The server is not who decides whether a signature is good — the agent is, against the
//! keys it pinned (docs/protocol.md section 6.11) — so a compromised server gains
//! nothing by skipping these checks. It checks the shape at ingest, the deadline, and an
//! Ed25519 signature by one of the account's registered owner keys (the registration
//! key and those added by owner-keys statements, [`crate::owner_keys`]) so that a client
//! that signed the wrong bytes learns it at once, not from a denied command minutes
//! later. It stores `user_sig` and `not_after` with the command (as one JSON text in
//! the `user_sig` column) and carries both in every `command_delivery`.
//!
//! When an agent refuses a command for its signature (`command_ack` `rejected` `2011`)
//! the server records `command.owner_signature_invalid` in the audit trail and raises an
//! `owner_signature_invalid` security alert (live view, webhook), whether or not it
//! knows the command: a command it never made is the sign of someone else speaking for
//! it.

use serde::{Deserialize, Serialize};
use serde_json::json;
use tether_proto::messages::command::{CommandAck, Method};
use tether_proto::messages::discovery::{KeyRole, OwnerKey};
use tether_proto::messages::notify::Severity;
use tether_proto::owner_sig::{self, UserSig, command_statement};
use tether_proto::{ErrorCode, MessageId, UnixMillis};

use crate::audit::{self, Outcome};
use crate::error::ApiError;
use crate::state::AppState;

/// The audit action of a command an agent refused for its owner signature.
pub const AUDIT_ACTION: &str = "command.owner_signature_invalid";
/// The alert kind raised then.
pub const ALERT_KIND: &str = "owner_signature_invalid";

/// What the `user_sig` column holds: the signature and the deadline it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    not_after: UnixMillis,
    user_sig: UserSig,
}

/// The column's text for a signed command.
pub fn to_stored(sig: &UserSig, not_after: UnixMillis) -> Result<String, ApiError> {
    serde_json::to_string(&Stored {
        not_after,
        user_sig: sig.clone(),
    })
    .map_err(ApiError::internal)
}

/// The signature and deadline a stored command carries (none for an unsigned one, or
/// one stored before owner signatures, whose column held an opaque string).
pub fn from_stored(column: Option<&str>) -> (Option<UnixMillis>, Option<UserSig>) {
    match column.map(serde_json::from_str::<Stored>) {
        Some(Ok(s)) => (Some(s.not_after), Some(s.user_sig)),
        _ => (None, None),
    }
}

/// Checks a submitted signature before the command is stored: `not_after` is in the
/// future and at most 7 days (and the clock skew) away, the command's deadline does not
/// outlive it, and an Ed25519 signature by one of the account's registered owner keys
/// (`keys`) verifies; a signature by an approver key is refused.
/// Returns the command's deadline: the earlier of `now + ttl` and `not_after`.
#[allow(
    clippy::too_many_arguments,
    reason = "the statement's parts, as submitted"
)]
pub fn precheck(
    keys: &[OwnerKey],
    now: UnixMillis,
    ttl_deadline: UnixMillis,
    command_id: &MessageId,
    device_id: &str,
    method: Method,
    params: &serde_json::Value,
    sig: Option<&UserSig>,
    not_after: Option<UnixMillis>,
) -> Result<UnixMillis, ApiError> {
    let (sig, not_after) = match (sig, not_after) {
        (None, None) => return Ok(ttl_deadline),
        (Some(s), Some(n)) => (s, n),
        _ => {
            return Err(ApiError::with_message(
                ErrorCode::InvalidField,
                "user_sig and not_after go together",
            ));
        }
    };
    if not_after <= now {
        return Err(ApiError::with_message(
            ErrorCode::TtlExpired,
            "not_after, the deadline the owner signed, has passed (check this computer's clock)",
        ));
    }
    if not_after.0.saturating_sub(now.0) > owner_sig::MAX_STATEMENT_LIFETIME_MS {
        return Err(ApiError::with_message(
            ErrorCode::InvalidField,
            "not_after is more than 7 days away",
        ));
    }
    if keys
        .iter()
        .any(|k| k.kid == sig.kid() && k.kind == sig.kind() && k.role == KeyRole::Approver)
    {
        return Err(ApiError::with_message(
            ErrorCode::OwnerSignatureInvalid,
            "user_sig is by a key registered as an approver key: it may approve commands, not sign them",
        ));
    }
    let statement = command_statement(command_id, device_id, method, params, not_after)
        .map_err(|e| ApiError::with_message(ErrorCode::InvalidField, e.to_string()))?;
    if crate::owner_keys::check_registered(keys, &statement, sig) == Some(false) {
        return Err(ApiError::with_message(
            ErrorCode::OwnerSignatureInvalid,
            "user_sig does not verify over this command's statement (docs/protocol.md section 6.11)",
        ));
    }
    Ok(ttl_deadline.min(not_after))
}

/// An agent refused a command for its owner signature: audit it and raise the security
/// alert, whether or not the command is one the server made.
pub async fn on_refused(state: &AppState, device_id: &str, ack: &CommandAck, known: bool) {
    let command_id = ack.command_id.to_string();
    tracing::warn!(device = %device_id, command = %command_id, known, "an agent refused a command without a valid owner signature");
    let _ = audit::record(
        state,
        device_id,
        AUDIT_ACTION,
        Some(device_id),
        Outcome::Denied,
        json!({"command_id": command_id, "code": ErrorCode::OwnerSignatureInvalid.number(),
               "known_command": known}),
    )
    .await;
    let message = if known {
        format!("the PC refused command {command_id}: it is not signed by a key its owner pinned")
    } else {
        format!(
            "the PC refused command {command_id}, which this server never accepted: someone \
             with the server's keys sent a command its owner did not sign"
        )
    };
    if let Err(e) = crate::alerts::raise(
        state,
        device_id,
        ALERT_KIND,
        Severity::Critical,
        &message,
        None,
    )
    .await
    {
        tracing::warn!(device = %device_id, error = %e, "owner-signature alert not raised");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use ed25519_dalek::SigningKey;
    use serde_json::json;
    use tether_proto::KeyId;
    use tether_proto::owner_sig::sign_ed25519;
    use tether_proto::validate::b64url_encode;

    use super::*;

    fn registered(key: &SigningKey) -> Vec<OwnerKey> {
        let pk = key.verifying_key().to_bytes();
        vec![OwnerKey {
            kid: KeyId::for_ed25519(&pk).to_string(),
            kind: owner_sig::KIND_ED25519.into(),
            public_key: b64url_encode(&pk),
            role: KeyRole::Owner,
        }]
    }

    #[test]
    fn stored_signatures_round_trip_and_old_columns_read_as_unsigned() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let sig = sign_ed25519(&key, b"x");
        let text = to_stored(&sig, UnixMillis(5)).unwrap();
        assert_eq!(from_stored(Some(&text)), (Some(UnixMillis(5)), Some(sig)));
        assert_eq!(from_stored(Some("c2ln")), (None, None));
        assert_eq!(from_stored(None), (None, None));
    }

    #[test]
    fn precheck_verifies_the_accounts_key_and_bounds_the_deadline() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let u = registered(&key);
        let id = MessageId::from_random_bytes([3; 16]);
        let now = UnixMillis(1_000_000);
        let ttl = UnixMillis(1_300_000);
        let na = UnixMillis(1_200_000);
        let st = command_statement(&id, "dev_a", Method::LockScreen, &json!({}), na).unwrap();
        let sig = sign_ed25519(&key, &st);
        let check = |sig: &UserSig, dev: &str, na: UnixMillis| {
            precheck(
                &u,
                now,
                ttl,
                &id,
                dev,
                Method::LockScreen,
                &json!({}),
                Some(sig),
                Some(na),
            )
        };
        assert_eq!(
            check(&sig, "dev_a", na).unwrap(),
            na,
            "the earlier deadline"
        );
        let code = |r: Result<UnixMillis, ApiError>| r.unwrap_err().code();
        assert_eq!(
            code(check(&sig, "dev_b", na)),
            ErrorCode::OwnerSignatureInvalid
        );
        assert_eq!(code(check(&sig, "dev_a", now)), ErrorCode::TtlExpired);
        let far = UnixMillis(now.0 + owner_sig::MAX_STATEMENT_LIFETIME_MS + 1);
        assert_eq!(code(check(&sig, "dev_a", far)), ErrorCode::InvalidField);
        // Another key (one added later, or a passkey) is left to the agent.
        let other = sign_ed25519(&SigningKey::from_bytes(&[2; 32]), &st);
        assert_eq!(check(&other, "dev_b", na).unwrap(), na);
        // A key registered as an approver key signs approvals, not commands.
        let mut with_approver = u.clone();
        let mut approver = registered(&SigningKey::from_bytes(&[2; 32])).remove(0);
        approver.role = KeyRole::Approver;
        with_approver.push(approver);
        let r = precheck(
            &with_approver,
            now,
            ttl,
            &id,
            "dev_a",
            Method::LockScreen,
            &json!({}),
            Some(&other),
            Some(na),
        );
        assert_eq!(code(r), ErrorCode::OwnerSignatureInvalid);
        // Unsigned stays unsigned; half a signature is refused.
        let r = precheck(
            &u,
            now,
            ttl,
            &id,
            "d",
            Method::LockScreen,
            &json!({}),
            None,
            None,
        );
        assert_eq!(r.unwrap(), ttl);
        let r = precheck(
            &u,
            now,
            ttl,
            &id,
            "d",
            Method::LockScreen,
            &json!({}),
            Some(&sig),
            None,
        );
        assert_eq!(code(r), ErrorCode::InvalidField);
    }
}
