//! `tether whoami`.

use serde::Serialize;

use crate::context::Ctx;
use crate::error::CliError;
use crate::output::user_lines;
use crate::owner_key::OwnerKey;
use crate::views::UserView;

#[derive(Serialize)]
struct Whoami<'a> {
    server: &'a str,
    ca_fingerprint: &'a str,
    session_id: String,
    user: &'a UserView,
    owner_key: Option<OwnerKeyView>,
}

#[derive(Serialize)]
struct OwnerKeyView {
    kid: String,
    public_key: String,
    /// Whether the account registered this key as its `mobile_pub`.
    registered: bool,
}

pub(super) async fn run(ctx: &Ctx) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    let user: UserView = conn.get("/api/me").await?;
    let session = conn.session()?;
    let key = OwnerKey::load(&ctx.profile)?.map(|k| OwnerKeyView {
        registered: user.mobile_pub.as_deref() == Some(k.public_b64().as_str()),
        kid: k.kid(),
        public_key: k.public_b64(),
    });
    let out = Whoami {
        server: conn.server(),
        ca_fingerprint: &conn.trusted.fingerprint,
        session_id: session.session_id,
        user: &user,
        owner_key: key,
    };
    ctx.out.emit(&out, || {
        let key_line = match &out.owner_key {
            Some(k) if k.registered => format!("signing key: {} (registered)", k.kid),
            Some(k) => format!(
                "signing key: {} (NOT the key registered for this account; commands you sign here will be refused)",
                k.kid
            ),
            None => "signing key: none in this profile".to_owned(),
        };
        format!(
            "{}\n{key_line}\nserver: {} (CA {})",
            user_lines(&user),
            out.server,
            out.ca_fingerprint
        )
    });
    Ok(())
}
