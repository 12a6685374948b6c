//! `tether alerts [--all]` and `tether alerts --ack ID`.

use serde_json::json;

use crate::context::Ctx;
use crate::error::CliError;
use crate::output::clean;
use crate::output::live::alerts_table;
use crate::views::AlertView;

pub(super) async fn run(ctx: &Ctx, all: bool, ack: Option<&str>) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    if let Some(id) = ack {
        let id = alert_id(id)?;
        let a: AlertView = conn
            .post(&format!("/api/alerts/{id}/ack"), &json!({}))
            .await?;
        ctx.out.emit(&a, || {
            format!(
                "Acknowledged {} ({} on {}).",
                clean(&a.id),
                clean(&a.kind),
                clean(&a.device_id)
            )
        });
        return Ok(());
    }
    let path = if all {
        "/api/alerts?all=true"
    } else {
        "/api/alerts"
    };
    let alerts: Vec<AlertView> = conn.get(path).await?;
    let names = if ctx.out.is_json() {
        Default::default()
    } else {
        super::watch::device_names(&conn).await
    };
    ctx.out.emit(&alerts, || alerts_table(&alerts, &names));
    Ok(())
}

/// An alert id as a URL path segment (`alr_` plus letters and digits): anything that
/// would need escaping is refused rather than sent.
fn alert_id(id: &str) -> Result<&str, CliError> {
    super::devices::path_segment(id)
        .map_err(|_| CliError::usage(format!("{id:?} is not an alert id (see `tether alerts`)")))
}
