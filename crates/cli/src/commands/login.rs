//! `tether login` and `tether logout`.

use serde::Serialize;
use serde_json::json;
use tether_client::ClientError;
use tether_proto::ErrorCode;
use zeroize::Zeroizing;

use crate::auth::session_from_tokens;
use crate::context::{Ctx, Stdin};
use crate::error::CliError;
use crate::output::clean;
use crate::profile::ProfileConfig;
use crate::prompt;
use crate::views::{RevokedView, TokenResponse, UserView};

#[derive(Serialize)]
struct LoginRequest<'a> {
    email: &'a str,
    password: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    totp_code: Option<&'a str>,
}

#[derive(Serialize)]
struct LoggedIn<'a> {
    server: &'a str,
    user: &'a UserView,
    session_id: &'a str,
    expires_in: u64,
}

pub(super) async fn login(
    ctx: &Ctx,
    email: Option<String>,
    password_stdin: bool,
    totp: Option<String>,
) -> Result<(), CliError> {
    let stdin = if password_stdin {
        Stdin::Password
    } else {
        Stdin::Free
    };
    let conn = ctx.connect(stdin).await?;
    let config = ctx.profile.config()?;
    let email = email
        .or_else(|| config.as_ref().and_then(|c| c.email.clone()))
        .ok_or_else(|| CliError::usage("which account? pass --email YOU@EXAMPLE"))?;
    let password: Zeroizing<String> = if password_stdin {
        prompt::password_stdin()?
    } else if ctx.global.yes {
        return Err(CliError::usage(
            "--yes: no password to use; pass it with --password-stdin",
        ));
    } else {
        prompt::password(&format!("Password for {email}: "))?
    };

    let mut code = totp;
    let tokens: TokenResponse = loop {
        let req = LoginRequest {
            email: &email,
            password: &password,
            totp_code: code.as_deref().map(str::trim),
        };
        match conn.post_anonymous("/api/login", &req).await {
            Ok(t) => break t,
            Err(ClientError::Api { body, .. })
                if body.code == ErrorCode::SecondFactorRequired && code.is_none() =>
            {
                if !ctx.can_ask(stdin) {
                    return Err(CliError::refused_with_hint(
                        body,
                        "this account has TOTP turned on and there is no terminal to ask for the code: pass --totp CODE",
                    ));
                }
                code = Some(prompt::line("Code from your authenticator app: ")?);
            }
            Err(e) => return Err(e.into()),
        }
    };

    let session = session_from_tokens(conn.server(), &tokens, ctx.clock.now());
    ctx.profile.save_session(&session)?;
    let mut config = config.unwrap_or(ProfileConfig {
        server: conn.server().to_owned(),
        ca_fingerprint: conn.trusted.fingerprint.clone(),
        email: None,
    });
    config.email = Some(tokens.user.email.clone());
    ctx.profile.save_config(&config)?;

    let out = LoggedIn {
        server: conn.server(),
        user: &tokens.user,
        session_id: &tokens.session_id,
        expires_in: tokens.expires_in,
    };
    ctx.out.emit(&out, || {
        let mut s = format!(
            "Logged in to {} as {} ({}).",
            conn.server(),
            clean(&tokens.user.email),
            clean(&tokens.user.role)
        );
        if !tokens.user.totp_enabled {
            s.push_str("\nTip: turn on two-factor authentication with: tether totp enroll");
        }
        s
    });
    Ok(())
}

pub(super) async fn logout(ctx: &Ctx, all: bool) -> Result<(), CliError> {
    let Some(session) = ctx.profile.session()? else {
        ctx.out.emit(
            &json!({"logged_out": false, "reason": "not logged in"}),
            || "Not logged in.".into(),
        );
        return Ok(());
    };
    let conn = ctx.connect(Stdin::Free).await?;
    let mut revoked = None;
    if all {
        let r: RevokedView = conn.post("/api/sessions/revoke", &json!({})).await?;
        revoked = Some(r.revoked);
    }
    // The refresh token may have rotated during the call above: use the current one.
    let refresh_token = ctx
        .profile
        .session()?
        .map_or(session.refresh_token, |s| s.refresh_token);
    let done: Result<(), ClientError> = conn
        .post_anonymous("/api/logout", &json!({ "refresh_token": refresh_token }))
        .await;
    match done {
        // A token the server no longer knows is as logged out as it gets.
        Ok(()) | Err(ClientError::Api { status: 401, .. }) => ctx.profile.clear_session()?,
        Err(e) => return Err(e.into()),
    }
    ctx.out.emit(
        &json!({"logged_out": true, "server": conn.server(), "sessions_revoked": revoked}),
        || match revoked {
            Some(n) => format!(
                "Logged out of {}; {n} session(s) of your account were revoked everywhere.",
                conn.server()
            ),
            None => format!("Logged out of {}.", conn.server()),
        },
    );
    Ok(())
}
