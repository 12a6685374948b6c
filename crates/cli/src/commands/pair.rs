//! `tether pair`.

use serde_json::json;

use crate::context::Ctx;
use crate::error::CliError;
use crate::output::paired_line;
use crate::views::PairedView;

pub(super) async fn run(ctx: &Ctx, url_or_token: &str) -> Result<(), CliError> {
    let input = url_or_token.trim();
    if input.is_empty() {
        return Err(CliError::usage(
            "pass the pair URL the PC shows (https://HOST/pair#token=...) or its token",
        ));
    }
    let conn = ctx.connect_logged_in().await?;
    // The server accepts the token alone or the whole pair URL.
    let paired: PairedView = conn
        .post("/api/pair/confirm", &json!({ "pair_token": input }))
        .await?;
    ctx.out.emit(&paired, || paired_line(&paired));
    Ok(())
}
