//! `tether totp enroll` and `tether totp confirm`.

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use serde_json::json;

use crate::args::TotpCommand;
use crate::context::{Conn, Ctx, Stdin};
use crate::error::CliError;
use crate::output::clean;
use crate::prompt;
use crate::views::TotpEnrollment;

pub(super) async fn run(ctx: &Ctx, command: TotpCommand) -> Result<(), CliError> {
    match command {
        TotpCommand::Enroll { code } => enroll(ctx, code).await,
        TotpCommand::Confirm { code } => {
            let conn = ctx.connect_logged_in().await?;
            let code = match code {
                Some(c) => c,
                None if ctx.can_ask(Stdin::Free) => {
                    prompt::line("Code from your authenticator app: ")?
                }
                None => return Err(CliError::usage("pass the code with --code CODE")),
            };
            confirm(&conn, &code).await?;
            ctx.out.emit(&json!({"totp_enabled": true}), || {
                "Two-factor authentication is on: login now asks for a code.".into()
            });
            Ok(())
        }
    }
}

async fn enroll(ctx: &Ctx, code: Option<String>) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    let e: TotpEnrollment = conn.post("/api/totp/enroll", &json!({})).await?;
    let code = match code {
        Some(c) => Some(c),
        None if ctx.can_ask(Stdin::Free) && !ctx.out.is_json() => {
            show(&e);
            Some(prompt::line(
                "Enter the 6-digit code the app shows now to confirm: ",
            )?)
        }
        None => None,
    };
    let Some(code) = code else {
        ctx.out.emit(
            &json!({
                "secret_base32": e.secret_base32,
                "otpauth_url": e.otpauth_url,
                "confirmed": false,
            }),
            || {
                format!(
                    "{}\nFinish with: tether totp confirm --code CODE",
                    instructions(&e)
                )
            },
        );
        return Ok(());
    };
    confirm(&conn, &code).await?;
    ctx.out.emit(
        &json!({
            "secret_base32": e.secret_base32,
            "otpauth_url": e.otpauth_url,
            "confirmed": true,
        }),
        || "Two-factor authentication is on: login now asks for a code.".into(),
    );
    Ok(())
}

async fn confirm(conn: &Conn, code: &str) -> Result<(), CliError> {
    let () = conn
        .post("/api/totp/confirm", &json!({ "code": code.trim() }))
        .await?;
    Ok(())
}

/// The secret and URL in words.
fn instructions(e: &TotpEnrollment) -> String {
    format!(
        "Add this account to your authenticator app (scan the QR code, or type the secret).\n\
         secret: {}\nURL:    {}",
        clean(&e.secret_base32),
        clean(&e.otpauth_url)
    )
}

/// Prints the QR code (to a terminal only) and the instructions.
fn show(e: &TotpEnrollment) {
    if let Some(qr) = qr_text(&e.otpauth_url) {
        println!("{qr}");
    }
    println!("{}", instructions(e));
}

/// A QR code of `data` in Unicode half blocks, light on dark, with its quiet zone.
pub(crate) fn qr_text(data: &str) -> Option<String> {
    let code = QrCode::new(data.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .build(),
    )
}
