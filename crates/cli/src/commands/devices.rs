//! `tether devices` and `tether device <id>`.

use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{device_detail, devices_table};
use crate::views::DeviceView;

pub(super) async fn list(ctx: &Ctx) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    let devices: Vec<DeviceView> = conn.get("/api/devices").await?;
    ctx.out.emit(&devices, || devices_table(&devices));
    Ok(())
}

pub(super) async fn show(ctx: &Ctx, id: &str) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    let device: DeviceView = conn
        .get(&format!("/api/devices/{}", path_segment(id)?))
        .await?;
    ctx.out.emit(&device, || device_detail(&device));
    Ok(())
}

/// A device id as a URL path segment: ids are `dev_` plus letters and digits, so
/// anything that would need escaping is refused rather than sent.
pub(super) fn path_segment(id: &str) -> Result<&str, CliError> {
    let id = id.trim();
    if !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(id)
    } else {
        Err(CliError::usage(format!(
            "{id:?} is not a device id (see `tether devices`)"
        )))
    }
}
