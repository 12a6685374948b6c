//! `tether admin approve` and `tether admin settings`.

use serde_json::json;

use crate::args::AdminCommand;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{clean, device_detail};
use crate::views::{DeviceView, Settings};

pub(super) async fn run(ctx: &Ctx, command: AdminCommand) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    match command {
        AdminCommand::Approve { device_id } => {
            let id = super::devices::path_segment(&device_id)?;
            let d: DeviceView = conn
                .post(&format!("/api/devices/{id}/approve"), &json!({}))
                .await?;
            ctx.out.emit(&d, || {
                format!(
                    "Approved {} ({}).\n{}",
                    clean(&d.name),
                    clean(&d.id),
                    device_detail(&d)
                )
            });
        }
        AdminCommand::Settings { require_approval } => {
            let s: Settings = match require_approval {
                Some(v) => {
                    conn.put(
                        "/api/admin/settings",
                        &Settings {
                            require_device_approval: v,
                        },
                    )
                    .await?
                }
                None => conn.get("/api/admin/settings").await?,
            };
            ctx.out.emit(&s, || {
                format!(
                    "require device approval: {}{}",
                    s.require_device_approval,
                    if s.require_device_approval {
                        " (newly paired devices wait for `tether admin approve`)"
                    } else {
                        " (newly paired devices are active at once)"
                    }
                )
            });
        }
    }
    Ok(())
}
