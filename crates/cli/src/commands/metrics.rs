//! `tether metrics DEVICE [--hourly|--daily]`.

use crate::context::Ctx;
use crate::error::CliError;
use crate::output::live::metrics_table;
use crate::views::MetricsView;

pub(super) async fn run(ctx: &Ctx, device: &str, daily: bool) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    let id = super::devices::path_segment(device)?;
    let period = if daily { "daily" } else { "hourly" };
    let m: MetricsView = conn
        .get(&format!("/api/devices/{id}/metrics?period={period}"))
        .await?;
    ctx.out.emit(&m, || metrics_table(&m));
    Ok(())
}
