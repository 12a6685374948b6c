//! `tether policy show|set|check`, `tether step-up`, `tether approvals` and
//! `tether approve`: the central policy (docs/policy.md) from the command line.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tether_proto::messages::command::Method;
use tether_proto::owner_sig::command_statement;
use tether_proto::{MessageId, UnixMillis};

use super::target;
use crate::args::{PolicyCommand, method_name};
use crate::context::{Ctx, Stdin};
use crate::error::CliError;
use crate::output::{clean, table, utc};
use crate::owner_key::OwnerKey;
use crate::prompt;
use crate::views::CommandView;

/// The fewest characters of a command id taken as a short id.
const MIN_PREFIX: usize = 4;

/// The policy in force (`GET`/`PUT /api/policy`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PolicyView {
    policy_version: u64,
    policy_hash: String,
    bundle: Value,
    #[serde(default)]
    builtin: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_at: Option<u64>,
}

pub(super) async fn run(ctx: &Ctx, command: PolicyCommand) -> Result<(), CliError> {
    match command {
        PolicyCommand::Show => show(ctx).await,
        PolicyCommand::Set { file } => set(ctx, &file).await,
        PolicyCommand::Check {
            device,
            method,
            params,
            as_user,
        } => {
            let params = super::cmd::build_params(None, &params)?;
            method.opcode().parse_params(&params).map_err(|e| {
                CliError::usage(format!(
                    "invalid parameters for {}: {e} (see `tether cmd --help`)",
                    method_name(method)
                ))
            })?;
            let conn = ctx.connect_logged_in().await?;
            let target = target::resolve_on_server(&conn, &device).await?;
            let mut body = Map::new();
            body.insert("device_id".into(), json!(target.id));
            body.insert("method".into(), json!(method));
            body.insert("params".into(), params);
            if let Some(u) = as_user {
                body.insert("user_id".into(), json!(u));
            }
            let v: Value = conn.post("/api/policy/dry-run", &body).await?;
            ctx.out.emit(&v, || decision_lines(&v, &target.label()));
            Ok(())
        }
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A dry-run's answer in words.
fn decision_lines(v: &Value, device: &str) -> String {
    let method = text(v, "method");
    let head = match text(v, "decision") {
        "allow" => format!("{method} on {device}: allowed"),
        "deny" => format!("{method} on {device}: DENIED"),
        "needs_step_up" => format!(
            "{method} on {device}: needs a second factor from the last {} s (tether step-up)",
            v.get("fresh_second_factor_s")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        ),
        "needs_approval" => format!(
            "{method} on {device}: accepted, then waits for {} approval(s) by other users",
            v.get("approvals").and_then(Value::as_u64).unwrap_or(0)
        ),
        other => format!("{method} on {device}: {other}"),
    };
    let rule = match v.get("rule").and_then(Value::as_str) {
        Some(r) => format!("rule:   {}", clean(r)),
        None => "rule:   none (the policy's default or the method's built-in sensitivity)".into(),
    };
    format!(
        "{}\n{rule}\nreason: {}\npolicy: version {} ({})",
        clean(&head),
        clean(text(v, "reason")),
        v.get("policy_version").and_then(Value::as_u64).unwrap_or(0),
        clean(text(v, "policy_hash"))
    )
}

async fn show(ctx: &Ctx) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    let p: PolicyView = conn.get("/api/policy").await?;
    ctx.out.emit(&p, || {
        let origin = match (&p.author, p.created_at) {
            (Some(a), Some(t)) => format!("saved by {} at {}", clean(a), utc(t)),
            _ if p.builtin => "built in (no policy saved yet)".into(),
            _ => String::new(),
        };
        format!(
            "policy version {} ({origin})\nhash: {}\n{}",
            p.policy_version,
            clean(&p.policy_hash),
            serde_json::to_string_pretty(&p.bundle).unwrap_or_default()
        )
    });
    Ok(())
}

async fn set(ctx: &Ctx, file: &Path) -> Result<(), CliError> {
    let raw = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(CliError::io("reading the policy from standard input"))?;
        s
    } else {
        std::fs::read_to_string(file)
            .map_err(CliError::io(format!("reading {}", file.display())))?
    };
    let bundle: Value = serde_json::from_str(&raw)
        .map_err(|e| CliError::usage(format!("{} is not JSON: {e}", file.display())))?;
    let conn = ctx.connect_logged_in().await?;
    let p: PolicyView = conn.put("/api/policy", &bundle).await?;
    ctx.out.emit(&p, || {
        format!(
            "Saved policy version {} (hash {}). It applies to every command from now on.",
            p.policy_version,
            clean(&p.policy_hash)
        )
    });
    Ok(())
}

/// The answer of `POST /api/step-up`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StepUpView {
    session_id: String,
    second_factor_at: u64,
    #[serde(default)]
    method: String,
}

pub(super) async fn step_up(ctx: &Ctx, totp: Option<String>) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    let code = match totp {
        Some(c) => c,
        None if ctx.can_ask(Stdin::Free) => prompt::line("Code from your authenticator app: ")?,
        None => return Err(CliError::usage("pass the code with --totp CODE")),
    };
    let v: StepUpView = conn
        .post("/api/step-up", &json!({"totp_code": code.trim()}))
        .await?;
    ctx.out.emit(&v, || {
        format!(
            "Second factor recorded for this session at {}: sensitive commands sent in the next \
             few minutes (5 by default; the policy rule may say otherwise) are allowed.",
            utc(v.second_factor_at)
        )
    });
    Ok(())
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

fn approvals_count(c: &CommandView) -> String {
    format!(
        "{}/{}",
        c.approvals.as_ref().map_or(0, Vec::len),
        c.approvals_required.unwrap_or(0)
    )
}

pub(super) async fn approvals(ctx: &Ctx) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    let waiting: Vec<CommandView> = conn.get("/api/approvals").await?;
    ctx.out.emit(&waiting, || {
        if waiting.is_empty() {
            return "No command waits for your approval.".into();
        }
        let rows: Vec<Vec<String>> = waiting
            .iter()
            .map(|c| {
                vec![
                    short(&c.command_id),
                    clean(&c.device_id).into_owned(),
                    clean(&c.method).into_owned(),
                    clean(&c.origin_user_id).into_owned(),
                    approvals_count(c),
                    c.policy_rule
                        .as_deref()
                        .map(clean)
                        .unwrap_or_default()
                        .into_owned(),
                    utc(c.expires_at),
                ]
            })
            .collect();
        format!(
            "{}\nApprove one with: tether approve ID",
            table(
                &[
                    "ID",
                    "DEVICE",
                    "METHOD",
                    "FROM",
                    "APPROVALS",
                    "RULE",
                    "EXPIRES"
                ],
                &rows
            )
        )
    });
    Ok(())
}

/// The approval's body: a signature over the command's statement (the same bytes its
/// owner signed), made with this profile's key, when the command is signed.
fn approval_body(
    ctx: &Ctx,
    c: Option<&CommandView>,
    unsigned: bool,
) -> Result<Map<String, Value>, CliError> {
    let mut body = Map::new();
    let Some((c, not_after)) = c.and_then(|c| c.not_after.map(|n| (c, n))) else {
        return Ok(body);
    };
    if unsigned {
        return Ok(body);
    }
    let key = OwnerKey::require(&ctx.profile)?;
    let id = MessageId::parse(&c.command_id)
        .map_err(|e| CliError::usage(format!("the command id cannot be signed: {e}")))?;
    let method: Method = serde_json::from_value(Value::String(c.method.clone()))
        .map_err(|e| CliError::usage(format!("unknown method {:?}: {e}", c.method)))?;
    let statement = command_statement(&id, &c.device_id, method, &c.params, UnixMillis(not_after))
        .map_err(|e| CliError::usage(format!("the command cannot be signed: {e}")))?;
    let sig = serde_json::to_value(key.sign(&statement))
        .map_err(|e| CliError::usage(format!("the approval cannot be signed: {e}")))?;
    body.insert("user_sig".into(), sig);
    Ok(body)
}

pub(super) async fn approve(ctx: &Ctx, typed: &str, unsigned: bool) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    let typed = typed.trim().to_ascii_lowercase();
    let id = if MessageId::parse(&typed).is_ok() {
        typed
    } else {
        if typed.len() < MIN_PREFIX || !typed.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(CliError::usage(format!(
                "{typed:?} is not a command id: give the id, or at least {MIN_PREFIX} characters of it as `tether approvals` shows it"
            )));
        }
        let waiting: Vec<CommandView> = conn.get("/api/approvals").await?;
        let found: Vec<&CommandView> = waiting
            .iter()
            .filter(|c| c.command_id.starts_with(&typed))
            .collect();
        match found.as_slice() {
            [one] => one.command_id.clone(),
            [] => {
                return Err(CliError::usage(format!(
                    "no command waiting for your approval starts with {typed:?} (see `tether approvals`)"
                )));
            }
            _ => {
                return Err(CliError::usage(format!(
                    "{typed:?} is the start of several commands' ids: give more of it"
                )));
            }
        }
    };
    // What the owner signed, to sign the same statement: from the approvals list (an
    // approver may not see the device otherwise), or the command itself.
    let waiting: Vec<CommandView> = conn.get("/api/approvals").await?;
    let command = match waiting.into_iter().find(|c| c.command_id == id) {
        Some(c) => Some(c),
        None => conn
            .get::<CommandView>(&format!("/api/command/{id}"))
            .await
            .ok(),
    };
    let body = approval_body(ctx, command.as_ref(), unsigned)?;
    let v: CommandView = conn
        .post(&format!("/api/command/{id}/approve"), &body)
        .await?;
    ctx.out.emit(&v, || {
        let next = if v.state == "awaiting_approval" {
            "it waits for more approvals by other users".to_owned()
        } else {
            format!("it is {} for its PC", clean(&v.state))
        };
        format!(
            "Approved command {} ({} on {}): {} approvals; {next}.",
            clean(&v.command_id),
            clean(&v.method),
            clean(&v.device_id),
            approvals_count(&v)
        )
    });
    Ok(())
}
