//! `tether cmd DEVICE METHOD [--param K=V]... [--wait]`: submit a command
//! (`POST /api/command`) and, with `--wait`, follow it to its end ([`follow`]).
//!
//! The parameters are checked here with the same rules the server and the PC apply
//! (`Opcode::parse_params`), so a typo fails before anything is sent. Each submission
//! gets a fresh `message_id` (the idempotency key) and trace id. With `--wait` the live
//! view is opened before the command is sent, so no state change can slip by unseen.
//!
//! Every command is signed with the profile's owner key (`owner-key.json`): the command
//! statement of docs/protocol.md section 6.11 — this device, this `message_id`, the
//! method, the exact parameters, and `not_after` = now + the TTL — so the PC can check
//! that its owner, not just the server, asked. `--unsigned` sends it without (the PC
//! refuses it with 2011; for checking exactly that).

mod follow;

use std::time::Duration;

use rand_core::{OsRng, RngCore};
use serde::Serialize;
use serde_json::{Map, Value};
use tether_proto::messages::command::{Method, Priority};
use tether_proto::owner_sig::{UserSig, command_statement};
use tether_proto::{ErrorCode, MessageId, TraceId, UnixMillis};

use super::target::{self, Target};
use crate::args::{CmdArgs, method_name};
use crate::context::{Conn, Ctx};
use crate::error::{CliError, CommandFailure, Outcome};
use crate::output::clean;
use crate::output::command::{accepted_lines, result_block};
use crate::owner_key::OwnerKey;
use crate::views::{CommandView, Ending};

/// How long `--wait` waits by default beyond the TTL: the server expires the command at
/// its TTL and its sweep runs every second, so the end is normally seen well before.
const WAIT_BEYOND_TTL: Duration = Duration::from_secs(30);

/// The body of `POST /api/command`.
#[derive(Debug, Serialize)]
struct CommandRequest<'a> {
    device_id: &'a str,
    method: Method,
    params: &'a Value,
    ttl_seconds: u32,
    message_id: &'a MessageId,
    trace_id: &'a TraceId,
    priority: Priority,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<UnixMillis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_sig: Option<UserSig>,
}

pub(super) async fn run(ctx: &Ctx, args: CmdArgs) -> Result<(), CliError> {
    let params = build_params(args.params_json.as_deref(), &args.params)?;
    args.method.opcode().parse_params(&params).map_err(|e| {
        CliError::usage(format!(
            "invalid parameters for {}: {e} (see `tether cmd --help`)",
            method_name(args.method)
        ))
    })?;
    let key = if args.unsigned {
        None
    } else {
        Some(OwnerKey::require(&ctx.profile)?)
    };
    let conn = ctx.connect_logged_in().await?;
    let target = target::resolve_on_server(&conn, &args.device).await?;
    let message_id = MessageId::from_random_bytes(random16()?);
    let trace_id = TraceId::from_random_bytes(random16()?);
    let not_after = ctx
        .clock
        .now()
        .saturating_add(Duration::from_secs(u64::from(args.ttl)));
    let user_sig = match &key {
        Some(k) => Some(
            k.sign(
                &command_statement(&message_id, &target.id, args.method, &params, not_after)
                    .map_err(|e| CliError::usage(format!("the command cannot be signed: {e}")))?,
            ),
        ),
        None => None,
    };
    let body = CommandRequest {
        device_id: &target.id,
        method: args.method,
        params: &params,
        ttl_seconds: args.ttl,
        message_id: &message_id,
        trace_id: &trace_id,
        priority: args.priority.into(),
        not_after: user_sig.as_ref().map(|_| not_after),
        user_sig,
    };

    if !args.wait {
        let accepted: CommandView = conn.post("/api/command", &body).await?;
        let lines = accepted_lines(&accepted, &target.label());
        // Denied at ingest is possible: then `--json` prints the error (with the command).
        let result = ending(&accepted, &target, None);
        if result.is_ok() {
            ctx.out.emit(&accepted, || lines);
        } else {
            ctx.out.human(&lines);
        }
        return result;
    }

    // Subscribed before the command exists: its first event cannot be missed.
    let stream = conn
        .stream(&format!("/api/live?device={}", target.id))
        .await?;
    let started = tokio::time::Instant::now();
    let accepted: CommandView = conn.post("/api/command", &body).await?;
    ctx.out.human(&accepted_lines(&accepted, &target.label()));
    let wait = args.timeout.map_or_else(
        || Duration::from_secs(u64::from(args.ttl)).saturating_add(WAIT_BEYOND_TTL),
        Duration::from_secs,
    );
    let deadline = started
        .checked_add(wait)
        .ok_or_else(|| CliError::usage("--timeout is too long"))?;
    let followed = follow::follow(ctx, &conn, stream, &accepted, deadline).await?;
    let mut view = followed.view;
    if !followed.finished {
        return ending(&view, &target, Some(wait));
    }
    mark_viewed(ctx, &conn, &mut view).await;
    let block = result_block(&view);
    if !block.is_empty() {
        ctx.out.human(&block);
    }
    let result = ending(&view, &target, None);
    if result.is_ok() {
        ctx.out.emit(&view, String::new);
    }
    result
}

/// The parameters: `--params-json` (an object), then each `--param` added to it.
pub(crate) fn build_params(
    json: Option<&str>,
    pairs: &[(String, Value)],
) -> Result<Value, CliError> {
    let mut params = match json {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(CliError::usage("--params-json must be a JSON object")),
            Err(e) => return Err(CliError::usage(format!("--params-json is not JSON: {e}"))),
        },
    };
    for (k, v) in pairs {
        if params.insert(k.clone(), v.clone()).is_some() {
            return Err(CliError::usage(format!(
                "the parameter {k:?} is given twice"
            )));
        }
    }
    Ok(Value::Object(params))
}

fn random16() -> Result<[u8; 16], CliError> {
    let mut b = [0u8; 16];
    OsRng.try_fill_bytes(&mut b).map_err(|e| {
        CliError::usage(format!("the system's random number generator failed: {e}"))
    })?;
    Ok(b)
}

/// Marks a finished command's result viewed (`ack_viewed`). Best effort: the result was
/// shown whether or not the server records that.
async fn mark_viewed(ctx: &Ctx, conn: &Conn, view: &mut CommandView) {
    let path = format!("/api/command/{}/ack_viewed", view.command_id);
    match conn
        .post::<_, CommandView>(&path, &serde_json::json!({}))
        .await
    {
        Ok(acked) => view.viewed_at = acked.viewed_at,
        Err(e) => ctx
            .out
            .note(&format!("(the result could not be marked viewed: {e})")),
    }
}

/// `Ok` for a command that succeeded or is under way as asked; the failure otherwise.
/// `waited` is set when `--wait` ran out of time.
pub(crate) fn ending(
    v: &CommandView,
    target: &Target,
    waited: Option<Duration>,
) -> Result<(), CliError> {
    let id = clean(&v.command_id).into_owned();
    let outcome = match (v.ending(), waited) {
        (Ending::Succeeded, _) => return Ok(()),
        (Ending::Pending, None) => return Ok(()),
        (Ending::Pending, Some(_)) => Outcome::Timeout,
        (Ending::Unsuccessful(o), _) => o,
    };
    let code = v.error_code().and_then(ErrorCode::from_number);
    let explain = code.map_or_else(String::new, |c| {
        format!("; `tether errors {}` explains the code", c.number())
    });
    let (message, hint) = match outcome {
        Outcome::Timeout => (
            format!(
                "command {id} is still {} after {} s",
                clean(&v.state),
                waited.unwrap_or_default().as_secs()
            ),
            format!(
                "it goes on: the server keeps it until {} (its TTL){}; follow it with: tether command {id}",
                crate::output::utc(v.expires_at),
                if v.state == "queued" {
                    format!(", and {} gets it when it connects", target.label())
                } else {
                    String::new()
                }
            ),
        ),
        Outcome::Expired => (
            format!("command {id} expired before it ran"),
            format!(
                "{} did not take or run it within its TTL (offline?); send it again, perhaps with a longer --ttl",
                target.label()
            ),
        ),
        Outcome::Denied => (
            format!("command {id} was denied"),
            format!("policy, the PC or its helper refused it{explain}"),
        ),
        Outcome::Failed => (
            format!("command {id} failed"),
            format!("the PC tried and failed{explain}"),
        ),
        Outcome::Dlq => (
            format!(
                "command {id} was never acknowledged by {} after {} attempts (dead-letter queue)",
                target.label(),
                v.attempts
            ),
            format!(
                "check the agent on the PC (tether device {})",
                clean(&target.id)
            ),
        ),
    };
    Err(CliError::Command(Box::new(CommandFailure {
        outcome,
        code,
        command_id: v.command_id.clone(),
        message,
        hint: Some(hint),
        view: Some(Box::new(v.clone())),
    })))
}

#[cfg(test)]
mod tests;
