//! Owners' keys as the server sees them, and the signed statements that change them
//! (docs/protocol.md sections 4.8 and 6.12).
//!
//! A user's **registered keys** are the key they registered with (`mobile_pub`, an owner
//! key) with every owner-keys statement they submitted applied in version order. The
//! server uses them for early, clear errors (a command or an approval signed by a
//! registered Ed25519 key that does not verify) and pins them on a PC at pairing; it
//! never decides with them — each PC applies a statement only if a key it pins already
//! signed it, so a compromised server cannot add a key by storing one here.
//!
//! `POST /api/me/keys` stores a statement ([`submit`]) after checking that it is the
//! caller's, newer than their last one, unexpired, signed by one of their registered
//! **owner** keys (an approver key may not change keys) and leaves between 1 and 16
//! keys; then it pushes it to the caller's PCs that are online, through the live hub
//! ([`LiveKind::OwnerKeys`], reaching the gateway session wherever it runs). A PC that is
//! offline gets it when it connects: its `auth` says which statement version it applied
//! last, and the gateway sends the newer ones (`gateway/owner_keys.rs`).

use serde::Serialize;
use serde_json::json;
use tether_proto::messages::discovery::{KeyRole, OwnerKey};
use tether_proto::owner_sig::{self, KIND_ED25519, OwnerKeysStatement, OwnerKeysUpdate, UserSig};
use tether_proto::validate::b64url_decode;
use tether_proto::{ErrorCode, KeyId, UnixMillis};
use tether_store::{DeviceStatus, OwnerKeysRecord, User};
use utoipa::ToSchema;

use crate::audit::{self, Outcome};
use crate::error::ApiError;
use crate::events::{LiveEvent, LiveKind, publish_live};
use crate::routes::devices::presence_key;
use crate::state::AppState;

/// The audit action of a stored statement.
pub const AUDIT_ACTION: &str = "owner_keys.update";
/// The audit action of a refused one.
pub const AUDIT_REFUSED: &str = "owner_keys.update_refused";
/// At most this many keys are pinned on a PC (the agent refuses more).
pub const MAX_KEYS: usize = 16;
/// The longest a statement may stay valid: a PC offline longer than this misses it and
/// must be paired again (or get a newer statement signed by a key it pins).
pub const MAX_STATEMENT_LIFETIME_MS: u64 = 400 * 24 * 3600 * 1000;

/// The key a user registered with, as an owner key (none without one).
fn registration_key(user: &User) -> Option<OwnerKey> {
    let b64 = user.mobile_pub.as_ref()?;
    let raw: [u8; 32] = b64url_decode(b64)?.try_into().ok()?;
    Some(OwnerKey {
        kid: KeyId::for_ed25519(&raw).to_string(),
        kind: KIND_ED25519.into(),
        public_key: b64.clone(),
        role: KeyRole::Owner,
    })
}

/// `keys` after `statement`: removals, then additions (an added kid replaces the key).
pub fn apply(keys: &[OwnerKey], statement: &OwnerKeysStatement) -> Vec<OwnerKey> {
    let mut out: Vec<OwnerKey> = keys
        .iter()
        .filter(|k| !statement.remove.contains(&k.kid))
        .cloned()
        .collect();
    for k in &statement.add {
        out.retain(|old| old.kid != k.kid);
        out.push(k.clone());
    }
    out
}

/// A stored statement, parsed (`None`, logged, for one that no longer parses).
fn parse(r: &OwnerKeysRecord) -> Option<OwnerKeysUpdate> {
    match serde_json::from_value::<OwnerKeysUpdate>(r.body.clone()) {
        Ok(u) => Some(u),
        Err(e) => {
            tracing::warn!(user = %r.user_id, version = r.version, error = %e, "a stored owner-keys statement is unreadable; skipped");
            None
        }
    }
}

/// A user's statements, parsed, in version order, with when each was stored.
pub async fn statements(
    state: &AppState,
    user_id: &str,
) -> Result<Vec<(OwnerKeysUpdate, UnixMillis)>, ApiError> {
    Ok(state
        .store
        .owner_keys_statements(user_id)
        .await?
        .iter()
        .filter_map(|r| parse(r).map(|u| (u, r.created_at)))
        .collect())
}

/// The user's registered keys: their registration key with every statement for all
/// their PCs applied (what a PC paired now pins).
pub async fn registered(state: &AppState, user: &User) -> Result<Vec<OwnerKey>, ApiError> {
    registered_on(state, user, None).await
}

/// The user's registered keys as `device` sees them: with the statements for all their
/// PCs and those for that one device (`None`: only the former).
pub async fn registered_on(
    state: &AppState,
    user: &User,
    device: Option<&str>,
) -> Result<Vec<OwnerKey>, ApiError> {
    let all = statements(state, &user.id).await?;
    Ok(fold(user, all.iter().map(|(u, _)| &u.statement), device))
}

fn fold<'a>(
    user: &User,
    statements: impl Iterator<Item = &'a OwnerKeysStatement>,
    device: Option<&str>,
) -> Vec<OwnerKey> {
    let mut keys: Vec<OwnerKey> = registration_key(user).into_iter().collect();
    for s in statements.filter(|s| s.device_id.is_none() || s.device_id.as_deref() == device) {
        keys = apply(&keys, s);
    }
    keys
}

/// The registered keys that may sign commands and owner-keys statements.
pub fn owner_role(keys: &[OwnerKey]) -> Vec<OwnerKey> {
    keys.iter()
        .filter(|k| k.role == KeyRole::Owner)
        .cloned()
        .collect()
}

/// Verifies an Ed25519 `sig` over `statement` when one of `keys` (of its kind and kid)
/// made it: `Some(true|false)`; `None` when no such key is registered or it is a passkey
/// (the server leaves WebAuthn assertions to the agents).
pub fn check_registered(keys: &[OwnerKey], statement: &[u8], sig: &UserSig) -> Option<bool> {
    let UserSig::Ed25519(s) = sig else {
        return None;
    };
    let key = keys
        .iter()
        .find(|k| k.kind == KIND_ED25519 && k.kid == s.kid)?;
    let raw = b64url_decode(&key.public_key)?;
    Some(owner_sig::verify_ed25519(&raw, statement, s))
}

/// One statement as `GET /api/me/keys` lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatementView {
    /// Its version.
    pub version: u64,
    /// The key that signed it.
    pub signed_by: String,
    /// Only this device (absent: every PC of the owner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Key ids added, with their roles (`kid:role`).
    pub added: Vec<String>,
    /// Key ids removed.
    pub removed: Vec<String>,
    /// Void after this instant (Unix ms).
    #[schema(value_type = u64)]
    pub not_after: UnixMillis,
    /// When the server stored it (Unix ms).
    #[schema(value_type = u64)]
    pub created_at: UnixMillis,
}

/// The caller's keys and the statements that made them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeysView {
    /// The registered keys now, for all the caller's PCs (changes for one PC only are
    /// in `statements`): `{kid, kind, public_key, role?}` (`role` absent: owner).
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<OwnerKey>,
    /// Every statement, oldest version first.
    pub statements: Vec<StatementView>,
    /// The newest statement's version (0: none).
    pub version: u64,
    /// After `POST`: how many of the caller's PCs were online to be sent it now (the
    /// others get it when they connect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed_to: Option<usize>,
}

fn statement_view(u: &OwnerKeysUpdate, created_at: UnixMillis) -> StatementView {
    let s = &u.statement;
    StatementView {
        version: s.version,
        signed_by: u.user_sig.kid().to_owned(),
        device_id: s.device_id.clone(),
        added: s
            .add
            .iter()
            .map(|k| format!("{}:{}", k.kid, k.role.as_str()))
            .collect(),
        removed: s.remove.clone(),
        not_after: s.not_after,
        created_at,
    }
}

/// The caller's keys and statements.
pub async fn view(state: &AppState, user: &User) -> Result<KeysView, ApiError> {
    let all = statements(state, &user.id).await?;
    let keys = fold(user, all.iter().map(|(u, _)| &u.statement), None);
    Ok(KeysView {
        keys,
        version: all.last().map_or(0, |(u, _)| u.statement.version),
        statements: all.iter().map(|(u, at)| statement_view(u, *at)).collect(),
        pushed_to: None,
    })
}

fn refused(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::with_message(code, message)
}

/// Checks a statement against the user's registered keys and statements; returns the
/// key set it leaves.
fn check(
    user: &User,
    keys: &[OwnerKey],
    last_version: u64,
    update: &OwnerKeysUpdate,
    now: UnixMillis,
) -> Result<Vec<OwnerKey>, ApiError> {
    let s = &update.statement;
    if s.user_id != user.id {
        return Err(refused(
            ErrorCode::InvalidField,
            "statement.user_id must be your own user id (GET /api/me)",
        ));
    }
    if s.version <= last_version {
        return Err(refused(
            ErrorCode::SequenceReplay,
            format!(
                "statement.version must be above {last_version}, your last statement's \
                 (your PCs refuse an older one)"
            ),
        ));
    }
    if s.not_after <= now {
        return Err(refused(
            ErrorCode::TtlExpired,
            "statement.not_after has passed (check this computer's clock)",
        ));
    }
    if s.not_after.0.saturating_sub(now.0) > MAX_STATEMENT_LIFETIME_MS {
        return Err(refused(
            ErrorCode::InvalidField,
            "statement.not_after is more than 400 days away",
        ));
    }
    let signer = update.user_sig.kid();
    let Some(signing_key) = keys
        .iter()
        .find(|k| k.kid == signer && k.kind == update.user_sig.kind())
    else {
        return Err(refused(
            ErrorCode::OwnerSignatureInvalid,
            format!(
                "user_sig is by {signer:?}, which is not one of your registered keys: sign \
                 with a key your PCs pin already (tether keys list)"
            ),
        ));
    };
    if signing_key.role != KeyRole::Owner {
        return Err(refused(
            ErrorCode::OwnerSignatureInvalid,
            format!("{signer:?} is an approver key: only an owner key may change your keys"),
        ));
    }
    let bytes = s
        .canonical()
        .map_err(|e| refused(ErrorCode::InvalidField, e.to_string()))?;
    if check_registered(keys, &bytes, &update.user_sig) == Some(false) {
        return Err(refused(
            ErrorCode::OwnerSignatureInvalid,
            "user_sig does not verify over the statement's canonical form (docs/protocol.md section 6.12)",
        ));
    }
    let after = apply(keys, s);
    if owner_role(&after).is_empty() {
        return Err(refused(
            ErrorCode::InvalidField,
            "the statement would leave no owner key: your PCs refuse it (pair again instead)",
        ));
    }
    if after.len() > MAX_KEYS {
        return Err(refused(
            ErrorCode::InvalidField,
            format!("the statement would leave more than {MAX_KEYS} keys"),
        ));
    }
    Ok(after)
}

/// Stores a signed statement of `user`'s, audits it and pushes it to their online PCs.
pub async fn submit(
    state: &AppState,
    user: &User,
    update: OwnerKeysUpdate,
) -> Result<KeysView, ApiError> {
    match accept(state, user, &update).await {
        Ok(v) => Ok(v),
        Err(e) => {
            let _ = audit::record(
                state,
                &user.id,
                AUDIT_REFUSED,
                Some(&user.id),
                Outcome::Denied,
                json!({"version": update.statement.version, "signed_by": update.user_sig.kid(),
                       "code": e.code().number(), "reason": e.message()}),
            )
            .await;
            Err(e)
        }
    }
}

async fn accept(
    state: &AppState,
    user: &User,
    update: &OwnerKeysUpdate,
) -> Result<KeysView, ApiError> {
    let now = state.now();
    let all = statements(state, &user.id).await?;
    // A statement for one PC is checked against the keys that PC has.
    let device = update.statement.device_id.as_deref();
    let keys = fold(user, all.iter().map(|(u, _)| &u.statement), device);
    let last = all.last().map_or(0, |(u, _)| u.statement.version);
    check(user, &keys, last, update, now)?;
    let devices: Vec<_> = state
        .store
        .devices_for_owner(&user.id)
        .await?
        .into_iter()
        .filter(|d| d.status == DeviceStatus::Active)
        .filter(|d| {
            update
                .statement
                .device_id
                .as_ref()
                .is_none_or(|id| *id == d.id)
        })
        .collect();
    if let Some(id) = &update.statement.device_id
        && devices.is_empty()
    {
        return Err(refused(
            ErrorCode::NotFound,
            format!("statement.device_id: you have no active device {id:?}"),
        ));
    }
    let body = serde_json::to_value(update).map_err(ApiError::internal)?;
    let stored = state
        .store
        .insert_owner_keys(&OwnerKeysRecord {
            user_id: user.id.clone(),
            version: update.statement.version,
            body: body.clone(),
            signer_kid: update.user_sig.kid().to_owned(),
            created_at: now,
        })
        .await?;
    if !stored {
        return Err(refused(
            ErrorCode::SequenceReplay,
            "a statement with this version was stored meanwhile; sign a newer one",
        ));
    }
    let s = &update.statement;
    audit::record(
        state,
        &user.id,
        AUDIT_ACTION,
        Some(&user.id),
        Outcome::Success,
        json!({"version": s.version, "signed_by": update.user_sig.kid(),
               "device_id": s.device_id,
               "added": s.add.iter().map(|k| json!({"kid": k.kid, "kind": k.kind, "role": k.role.as_str()})).collect::<Vec<_>>(),
               "removed": s.remove, "devices": devices.len()}),
    )
    .await?;
    let mut online: usize = 0;
    for d in &devices {
        if matches!(state.bus.get(&presence_key(&d.id)).await, Ok(Some(_))) {
            online = online.saturating_add(1);
        }
        let event = LiveEvent {
            kind: LiveKind::OwnerKeys,
            device_id: d.id.clone(),
            owner_id: Some(user.id.clone()),
            at: now,
            data: json!({"update": body}),
        };
        if let Err(e) = publish_live(state, &event).await {
            tracing::warn!(device = %d.id, error = %e.code(), "owner-keys push not published; the PC gets it at its next connect");
        }
    }
    let mut v = view(state, user).await?;
    v.pushed_to = Some(online);
    Ok(v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use ed25519_dalek::SigningKey;
    use tether_proto::owner_sig::{OWNER_KEYS_STATEMENT_TYPE, sign_ed25519};
    use tether_proto::validate::b64url_encode;
    use tether_store::Role;

    use super::*;

    fn key(seed: u8, role: KeyRole) -> (SigningKey, OwnerKey) {
        let k = SigningKey::from_bytes(&[seed; 32]);
        let pk = k.verifying_key().to_bytes();
        let o = OwnerKey {
            kid: KeyId::for_ed25519(&pk).to_string(),
            kind: KIND_ED25519.into(),
            public_key: b64url_encode(&pk),
            role,
        };
        (k, o)
    }

    fn user(k: &OwnerKey) -> User {
        User {
            id: "usr_a".into(),
            email: "a@lab.example".into(),
            password_hash: String::new(),
            role: Role::Student,
            mobile_pub: Some(k.public_key.clone()),
            totp: None,
            totp_last_step: 0,
            created_at: UnixMillis(0),
        }
    }

    fn statement(add: Vec<OwnerKey>, remove: Vec<String>, version: u64) -> OwnerKeysStatement {
        OwnerKeysStatement {
            kind: OWNER_KEYS_STATEMENT_TYPE.into(),
            user_id: "usr_a".into(),
            device_id: None,
            version,
            add,
            remove,
            not_after: UnixMillis(2_000),
        }
    }

    fn signed(by: &SigningKey, s: OwnerKeysStatement) -> OwnerKeysUpdate {
        let user_sig = sign_ed25519(by, &s.canonical().unwrap());
        OwnerKeysUpdate {
            statement: s,
            user_sig,
        }
    }

    #[test]
    fn only_a_registered_owner_key_changes_keys_and_one_owner_key_stays() {
        let (a, a_pub) = key(1, KeyRole::Owner);
        let (b, b_pub) = key(2, KeyRole::Owner);
        let (c, c_pub) = key(3, KeyRole::Approver);
        let u = user(&a_pub);
        let keys = fold(&u, std::iter::empty(), None);
        assert_eq!(keys, std::slice::from_ref(&a_pub));
        let now = UnixMillis(1_000);
        let code = |r: Result<Vec<OwnerKey>, ApiError>| r.unwrap_err().code();

        let add_b = signed(&a, statement(vec![b_pub.clone(), c_pub.clone()], vec![], 5));
        let after = check(&u, &keys, 0, &add_b, now).unwrap();
        assert_eq!(after, [a_pub.clone(), b_pub.clone(), c_pub.clone()]);
        // Replayed or older, expired, another user's, unregistered signer, bad signature.
        assert_eq!(
            code(check(&u, &keys, 5, &add_b, now)),
            ErrorCode::SequenceReplay
        );
        assert_eq!(
            code(check(&u, &keys, 0, &add_b, UnixMillis(2_000))),
            ErrorCode::TtlExpired
        );
        let mut other = add_b.clone();
        other.statement.user_id = "usr_b".into();
        assert_eq!(
            code(check(&u, &keys, 0, &other, now)),
            ErrorCode::InvalidField
        );
        let by_b = signed(&b, statement(vec![c_pub.clone()], vec![], 6));
        assert_eq!(
            code(check(&u, &keys, 0, &by_b, now)),
            ErrorCode::OwnerSignatureInvalid
        );
        let mut forged = add_b.clone();
        forged.statement.version = 9;
        assert_eq!(
            code(check(&u, &keys, 0, &forged, now)),
            ErrorCode::OwnerSignatureInvalid
        );
        // An approver key may not change keys; removing the last owner key is refused.
        let by_c = signed(&c, statement(vec![], vec![b_pub.kid.clone()], 7));
        assert_eq!(
            code(check(&u, &after, 5, &by_c, now)),
            ErrorCode::OwnerSignatureInvalid
        );
        let drop_owners = signed(
            &a,
            statement(vec![], vec![a_pub.kid.clone(), b_pub.kid.clone()], 8),
        );
        assert_eq!(
            code(check(&u, &after, 5, &drop_owners, now)),
            ErrorCode::InvalidField
        );
        // The new key signs the removal of the old one.
        let drop_a = signed(&b, statement(vec![], vec![a_pub.kid.clone()], 9));
        let last = check(&u, &after, 5, &drop_a, now).unwrap();
        assert_eq!(last, [b_pub, c_pub]);
        assert_eq!(
            fold(&u, [&add_b.statement, &drop_a.statement].into_iter(), None),
            last
        );
        // A statement for one PC changes only that PC's keys.
        let mut only_x = statement(vec![a_pub.clone()], vec![], 10);
        only_x.device_id = Some("dev_x".into());
        let seq = [&add_b.statement, &drop_a.statement, &only_x];
        assert_eq!(fold(&u, seq.into_iter(), None), last);
        assert_eq!(fold(&u, seq.into_iter(), Some("dev_x")).len(), 3);
    }
}
