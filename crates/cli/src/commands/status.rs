//! `tether status`.

use serde::{Deserialize, Serialize};

use crate::context::{Ctx, Stdin};
use crate::error::CliError;
use crate::output::clean;

/// `GET /healthz`.
#[derive(Debug, Serialize, Deserialize)]
struct Health {
    status: String,
    #[serde(default)]
    version: String,
}

#[derive(Serialize)]
struct Status<'a> {
    server: &'a str,
    ca_fingerprint: &'a str,
    health: &'a Health,
    logged_in_as: Option<String>,
}

pub(super) async fn run(ctx: &Ctx) -> Result<(), CliError> {
    let conn = ctx.connect(Stdin::Free).await?;
    let (_, health): (u16, Health) = conn.api.get("/healthz").await?;
    let logged_in_as = ctx
        .profile
        .session()?
        .filter(|s| s.server == conn.server())
        .map(|s| s.email);
    let out = Status {
        server: conn.server(),
        ca_fingerprint: &conn.trusted.fingerprint,
        health: &health,
        logged_in_as,
    };
    ctx.out.emit(&out, || {
        format!(
            "server:  {} (tether-server {}, {})\nCA:      {}\nprofile: {} — {}",
            out.server,
            clean(&health.version),
            clean(&health.status),
            out.ca_fingerprint,
            ctx.profile.dir().display(),
            out.logged_in_as
                .as_deref()
                .map_or("not logged in".to_owned(), |e| format!(
                    "logged in as {}",
                    clean(e)
                )),
        )
    });
    Ok(())
}
