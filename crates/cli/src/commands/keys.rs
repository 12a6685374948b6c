//! `tether keys list|add|remove`: the keys your PCs pin (docs/protocol.md sections 4.8
//! and 6.12). A change is an owner-keys statement signed with this profile's key
//! (`owner-key.json`); the server stores it and sends it to your PCs, and each PC
//! applies it only if it pins that key already — the server cannot add a key for you.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_proto::KeyId;
use tether_proto::messages::discovery::{KeyRole, OwnerKey as PinnedKey};
use tether_proto::owner_sig::{
    KIND_ED25519, KIND_WEBAUTHN_ES256, OWNER_KEYS_STATEMENT_TYPE, OwnerKeysStatement, UserSig,
    validate_owner_key,
};
use tether_proto::validate::b64url_decode;

use super::target;
use crate::args::KeysCommand;
use crate::context::{Conn, Ctx};
use crate::error::CliError;
use crate::output::{clean, table, utc};
use crate::owner_key::OwnerKey;
use crate::views::UserView;

/// One statement as the server lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StatementView {
    version: u64,
    signed_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
    not_after: u64,
    created_at: u64,
}

/// `GET`/`POST /api/me/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeysView {
    keys: Vec<PinnedKey>,
    #[serde(default)]
    statements: Vec<StatementView>,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pushed_to: Option<usize>,
}

#[derive(Serialize)]
struct KeysRequest<'a> {
    statement: &'a OwnerKeysStatement,
    user_sig: &'a UserSig,
}

pub(super) async fn run(ctx: &Ctx, c: KeysCommand) -> Result<(), CliError> {
    match c {
        KeysCommand::List => list(ctx).await,
        KeysCommand::Add {
            key,
            kind,
            kid,
            role,
            device,
            valid_days,
        } => {
            let role = if role == "approver" {
                KeyRole::Approver
            } else {
                KeyRole::Owner
            };
            let new = read_key(&key, &kind, kid.as_deref(), role)?;
            let what = format!("Added {} key {} ({})", role.as_str(), new.kid, new.kind);
            change(ctx, vec![new], vec![], device.as_deref(), valid_days, &what).await
        }
        KeysCommand::Remove {
            kid,
            device,
            valid_days,
        } => {
            let what = format!("Removed key {kid}");
            change(ctx, vec![], vec![kid], device.as_deref(), valid_days, &what).await
        }
    }
}

async fn list(ctx: &Ctx) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    let v: KeysView = conn.get("/api/me/keys").await?;
    let local = OwnerKey::load(&ctx.profile).ok().flatten().map(|k| k.kid());
    ctx.out.emit(&v, || render(&v, local.as_deref()));
    Ok(())
}

fn render(v: &KeysView, local: Option<&str>) -> String {
    let rows: Vec<Vec<String>> = v
        .keys
        .iter()
        .map(|k| {
            vec![
                clean(&k.kid).into_owned(),
                clean(&k.kind).into_owned(),
                k.role.as_str().to_owned(),
                clean(&k.public_key).into_owned(),
                if Some(k.kid.as_str()) == local {
                    "this profile's key".to_owned()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    let mut out = if rows.is_empty() {
        "No keys registered: your PCs pin none (register with the CLI to create one).".to_owned()
    } else {
        table(&["KID", "KIND", "ROLE", "PUBLIC KEY", ""], &rows)
    };
    if !v.statements.is_empty() {
        let rows: Vec<Vec<String>> = v
            .statements
            .iter()
            .map(|s| {
                let mut change: Vec<String> = s.added.iter().map(|a| format!("+{a}")).collect();
                change.extend(s.removed.iter().map(|r| format!("-{r}")));
                vec![
                    s.version.to_string(),
                    utc(s.created_at),
                    clean(&s.signed_by).into_owned(),
                    clean(s.device_id.as_deref().unwrap_or("every PC")).into_owned(),
                    clean(&change.join(" ")).into_owned(),
                ]
            })
            .collect();
        out.push_str("\n\nChanges (each signed by a key your PCs pinned before it):\n");
        out.push_str(&table(
            &["VERSION", "STORED", "SIGNED BY", "FOR", "CHANGE"],
            &rows,
        ));
    }
    out
}

/// Reads a public key: a file (an `owner-key.json`, any JSON object with `public_key`,
/// or the key text) or the key itself, in base64url (standard base64 is accepted too).
fn read_key(
    arg: &str,
    kind: &str,
    kid: Option<&str>,
    role: KeyRole,
) -> Result<PinnedKey, CliError> {
    let path = Path::new(arg);
    let text = if path.is_file() {
        std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(format!("cannot read the key file {}: {e}", path.display()))
        })?
    } else {
        arg.to_owned()
    };
    let text = text.trim();
    let (raw, file_kid) = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => (
            o.get("public_key")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| CliError::usage("the key file has no \"public_key\""))?,
            o.get("kid").and_then(Value::as_str).map(str::to_owned),
        ),
        _ => (text.to_owned(), None),
    };
    let public_key: String = raw
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    let bytes = b64url_decode(&public_key).ok_or_else(|| {
        CliError::usage(format!(
            "{arg:?} is neither a readable file nor a public key in base64url"
        ))
    })?;
    let kid = match kind {
        KIND_ED25519 => {
            let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                CliError::usage(format!(
                    "an ed25519 public key is 32 bytes; this one is {}",
                    bytes.len()
                ))
            })?;
            let derived = KeyId::for_ed25519(&raw).to_string();
            if let Some(k) = kid.filter(|k| *k != derived) {
                return Err(CliError::usage(format!(
                    "an ed25519 key's id is derived from it: {derived}, not {k:?} (leave --kid out)"
                )));
            }
            derived
        }
        _ => kid.map(str::to_owned).or(file_kid).ok_or_else(|| {
            CliError::usage("a webauthn-es256 key needs --kid <its credential id in base64url>")
        })?,
    };
    let key = PinnedKey {
        kid,
        kind: if kind == KIND_ED25519 {
            KIND_ED25519.into()
        } else {
            KIND_WEBAUTHN_ES256.into()
        },
        public_key,
        role,
    };
    validate_owner_key(&key, "kid", "kind", "public_key")
        .map_err(|e| CliError::usage(format!("this key cannot be pinned: {e}")))?;
    Ok(key)
}

async fn change(
    ctx: &Ctx,
    add: Vec<PinnedKey>,
    remove: Vec<String>,
    device: Option<&str>,
    valid_days: u64,
    what: &str,
) -> Result<(), CliError> {
    let key = OwnerKey::require(&ctx.profile)?;
    let conn = ctx.connect_logged_in().await?;
    let me: UserView = conn.get("/api/me").await?;
    let before: KeysView = conn.get("/api/me/keys").await?;
    let device_id = match device {
        Some(d) => Some(target::resolve_on_server(&conn, d).await?.id),
        None => None,
    };
    let statement = statement(ctx, &me, &before, device_id, add, remove, valid_days);
    let bytes = statement
        .canonical()
        .map_err(|e| CliError::usage(format!("the change cannot be signed: {e}")))?;
    let user_sig = key.sign(&bytes);
    let after = post(&conn, &statement, &user_sig).await?;
    let online = after.pushed_to.unwrap_or(0);
    ctx.out.emit(&after, || {
        format!(
            "{what}, signed by {} (version {}). Sent now to {online} PC(s) online; the \
             others get it when they connect (within {valid_days} days).",
            key.kid(),
            statement.version
        )
    });
    Ok(())
}

fn statement(
    ctx: &Ctx,
    me: &UserView,
    before: &KeysView,
    device_id: Option<String>,
    add: Vec<PinnedKey>,
    remove: Vec<String>,
    valid_days: u64,
) -> OwnerKeysStatement {
    let now = ctx.clock.now();
    OwnerKeysStatement {
        kind: OWNER_KEYS_STATEMENT_TYPE.into(),
        user_id: me.id.clone(),
        device_id,
        // The clock in ms, and above the last statement's whatever this clock says.
        version: now.0.max(before.version.saturating_add(1)),
        add,
        remove,
        not_after: now.saturating_add(Duration::from_secs(valid_days.saturating_mul(86_400))),
    }
}

async fn post(
    conn: &Conn,
    statement: &OwnerKeysStatement,
    user_sig: &UserSig,
) -> Result<KeysView, CliError> {
    conn.post(
        "/api/me/keys",
        &KeysRequest {
            statement,
            user_sig,
        },
    )
    .await
}
