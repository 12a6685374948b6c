//! `tether register`.

use rand_core::OsRng;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::context::{Ctx, Stdin};
use crate::error::CliError;
use crate::output::clean;
use crate::owner_key::OwnerKey;
use crate::profile::{OWNER_KEY_FILE, ProfileConfig};
use crate::prompt;
use crate::views::UserView;

#[derive(Serialize)]
struct RegisterRequest<'a> {
    email: &'a str,
    password: &'a str,
    mobile_pub: String,
}

#[derive(Serialize)]
struct Registered<'a> {
    user: &'a UserView,
    owner_key: KeyInfo,
}

#[derive(Serialize)]
struct KeyInfo {
    kid: String,
    public_key: String,
    file: String,
    new: bool,
}

pub(super) async fn run(ctx: &Ctx, email: &str, password_stdin: bool) -> Result<(), CliError> {
    let stdin = if password_stdin {
        Stdin::Password
    } else {
        Stdin::Free
    };
    let conn = ctx.connect(stdin).await?;
    let password: Zeroizing<String> = if password_stdin {
        prompt::password_stdin()?
    } else if ctx.global.yes {
        return Err(CliError::usage(
            "--yes: no password to use; pass it with --password-stdin",
        ));
    } else {
        prompt::new_password()?
    };
    // The key is saved before the account exists, so an account never carries a public
    // key whose private half was lost.
    let (key, new) = OwnerKey::load_or_create(&ctx.profile, &mut OsRng)?;
    let req = RegisterRequest {
        email,
        password: &password,
        mobile_pub: key.public_b64(),
    };
    let user: UserView = conn.post_anonymous("/api/register", &req).await?;
    let mut config = ctx.profile.config()?.unwrap_or(ProfileConfig {
        server: conn.server().to_owned(),
        ca_fingerprint: conn.trusted.fingerprint.clone(),
        email: None,
    });
    config.email = Some(user.email.clone());
    ctx.profile.save_config(&config)?;

    let file = ctx.profile.path(OWNER_KEY_FILE).display().to_string();
    let out = Registered {
        user: &user,
        owner_key: KeyInfo {
            kid: key.kid(),
            public_key: key.public_b64(),
            file: file.clone(),
            new,
        },
    };
    ctx.out.emit(&out, || {
        format!(
            "Registered {} ({}) on {}.\nYour signing key {} is in {file} (keep it private; \
             your PCs will trust commands signed with it).\nNext: tether login --email {}",
            clean(&user.email),
            clean(&user.id),
            conn.server(),
            key.kid(),
            clean(&user.email),
        )
    });
    Ok(())
}
