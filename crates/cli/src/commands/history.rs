//! `tether commands DEVICE` (a device's commands, newest first) and `tether command ID`
//! (one command with every state change).

use crate::context::{Conn, Ctx};
use crate::error::CliError;
use crate::output::command::{command_detail, commands_table, device_label};
use crate::views::{CommandView, DeviceView};

use super::target::{self, Target};

/// The most commands the server lists at once.
const MAX_LIMIT: u32 = 500;
/// The fewest characters of a command id taken as a short id.
const MIN_PREFIX: usize = 4;

pub(super) async fn list(ctx: &Ctx, device: &str, limit: u32) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    let target = target::resolve_on_server(&conn, device).await?;
    let commands: Vec<CommandView> = conn
        .get(&format!("/api/commands?device={}&limit={limit}", target.id))
        .await?;
    ctx.out
        .emit(&commands, || commands_table(&commands, &target.label()));
    Ok(())
}

pub(super) async fn show(ctx: &Ctx, id: &str, device: Option<&str>) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    let devices: Vec<DeviceView> = conn.get("/api/devices").await?;
    let id = full_id(&conn, id, device, &devices).await?;
    let v: CommandView = conn.get(&format!("/api/command/{id}")).await?;
    let name = devices
        .iter()
        .find(|d| d.id == v.device_id)
        .map(|d| d.name.as_str());
    ctx.out
        .emit(&v, || command_detail(&v, &device_label(&v.device_id, name)));
    Ok(())
}

/// A command id from what was typed: a whole id as it is; the start of one looked up
/// among the recent commands of `device`, or of every device listed.
async fn full_id(
    conn: &Conn,
    typed: &str,
    device: Option<&str>,
    devices: &[DeviceView],
) -> Result<String, CliError> {
    let typed = typed.trim().to_ascii_lowercase();
    if !typed.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') || typed.is_empty() {
        return Err(CliError::usage(format!(
            "{typed:?} is not a command id (see `tether commands DEVICE`)"
        )));
    }
    if tether_proto::MessageId::parse(&typed).is_ok() {
        return Ok(typed);
    }
    if typed.len() < MIN_PREFIX {
        return Err(CliError::usage(format!(
            "{typed:?} is too short: give at least {MIN_PREFIX} characters of the command id"
        )));
    }
    let targets: Vec<Target> = match device {
        Some(d) => vec![target::resolve(d, devices)?],
        None => devices
            .iter()
            .map(|d| Target {
                id: d.id.clone(),
                name: Some(d.name.clone()),
            })
            .collect(),
    };
    let mut found = Vec::new();
    for t in &targets {
        let commands: Vec<CommandView> = conn
            .get(&format!("/api/commands?device={}&limit={MAX_LIMIT}", t.id))
            .await?;
        found.extend(
            commands
                .into_iter()
                .filter(|c| c.command_id.starts_with(&typed))
                .map(|c| c.command_id),
        );
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(CliError::refused_locally(
            tether_proto::ErrorCode::NotFound,
            format!("no recent command starts with {typed:?}"),
            Some(
                "`tether commands DEVICE` lists a device's commands; give the whole id for older ones",
            ),
        )),
        several => Err(CliError::usage(format!(
            "{} commands start with {typed:?}: {}; give more of the id",
            several.len(),
            several.join(", ")
        ))),
    }
}
