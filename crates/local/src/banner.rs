//! The text tether-local shows once everything runs: where the web app is, which CA to
//! expect, and how to pair and command this PC. Pure functions of what they are given,
//! so the wording is tested without starting anything.

use std::fmt::Write as _;

use tether_agent::qr::Modules;
use tether_agent::state::{DeviceRecord, PairingTicket};
use tether_agent::status::rfc3339_ms;
use tether_proto::UnixMillis;

use crate::layout::Layout;
use crate::pc::Notice;

const RULE: &str =
    "================================================================================\n";

/// What the banner tells about the system.
#[derive(Debug)]
pub struct Facts<'a> {
    /// The web app's (the server's public) URL.
    pub url: &'a str,
    /// SHA-256 of the server's root CA.
    pub fingerprint: &'a str,
    /// The paths.
    pub layout: &'a Layout,
    /// The local PC's name; `None` without a local PC.
    pub device_name: Option<&'a str>,
    /// Why there is no local PC.
    pub no_pc_reason: Option<&'a str>,
    /// Now, for how long a pairing code stays valid.
    pub now: UnixMillis,
}

/// The banner. `pc` is what is known of the local PC (`None`: still starting).
pub fn banner(f: &Facts<'_>, pc: Option<&Notice>) -> String {
    let mut s = String::new();
    s.push('\n');
    s.push_str(RULE);
    let _ = writeln!(
        s,
        " Tether is running (tether-local {})\n",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(s, "   web app          {}", f.url);
    let _ = writeln!(s, "   CA fingerprint   {}", f.fingerprint);
    let _ = writeln!(s, "   data             {}\n", f.layout.data_dir.display());
    if let Some(Notice::Paired(_)) = pc {
        let _ = writeln!(
            s,
            " 1. Open {} in a browser and sign in with the account that paired this PC.",
            f.url
        );
    } else {
        let _ = writeln!(s, " 1. Open {} in a browser and create an account.", f.url);
    }
    s.push_str(
        "    The browser warns about the certificate: it comes from this server's own\n    \
         CA. Check that the CA's SHA-256 fingerprint is the one above, then go on.\n",
    );
    match (f.device_name, pc) {
        (None, _) => {
            let _ = writeln!(
                s,
                " 2. No local PC ({}).\n    Pair a PC by running tether-agent on it: see \
                 \"Pair a PC\" in README.md.",
                f.no_pc_reason.unwrap_or("--no-pc")
            );
        }
        (Some(name), None) => {
            let _ = writeln!(
                s,
                " 2. This PC ({name}) is still starting: its pairing QR code follows here once\n    \
                 its agent has asked the server (see the [agent] lines)."
            );
        }
        (Some(name), Some(Notice::Pairing(t))) => {
            s.push_str(&pairing(t, name, f.now, " 2. "));
        }
        (Some(_), Some(Notice::Paired(d))) => {
            let _ = writeln!(
                s,
                " 2. This PC is paired (in an earlier run): device {},\n    paired on {}.",
                d.device_id,
                rfc3339_ms(d.paired_at)
            );
        }
    }
    if let Some(name) = f.device_name {
        let _ = writeln!(
            s,
            " 3. Command it from its page in the web app (Lock screen), or with\n    \
             tether cmd {} lock_screen --wait\n    \
             The helper runs the recording executor: it performs nothing and records each\n    \
             command in {}",
            shell_word(name),
            f.layout.record.display()
        );
    }
    s.push('\n');
    if is_loopback(f.url) {
        s.push_str(
            " A phone cannot reach localhost: to pair from a phone, run with\n \
             --listen 0.0.0.0:8443 --public-url https://<this machine's address>:8443\n",
        );
    }
    s.push_str(" Ctrl-C stops the agent, the helper and the server.\n");
    s.push_str(RULE);
    s
}

/// A pairing request: what to do, the QR code, the link. `lead` starts the first line
/// (the step number in the banner).
pub fn pairing(t: &PairingTicket, device_name: &str, now: UnixMillis, lead: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{lead}Pair this PC ({device_name}): scan this QR code with your phone, or open the\n    \
         link in the browser where you are signed in (or: tether pair '<link>'):\n"
    );
    match Modules::encode(&t.pair_url) {
        Ok(m) => {
            for row in m.to_terminal().lines() {
                let _ = writeln!(s, "    {row}");
            }
        }
        Err(e) => {
            let _ = writeln!(s, "    (no QR code: {e})");
        }
    }
    let minutes = t.expires_at.saturating_sub(now.0).div_ceil(60_000);
    let _ = writeln!(
        s,
        "\n    pair link: {}\n    valid for {minutes} min; a new code is shown here if it \
         expires unconfirmed",
        t.pair_url
    );
    s
}

/// The PC got paired during this run.
pub fn paired_now(d: &DeviceRecord, device_name: &str) -> String {
    format!(
        "\ntether-local: this PC is paired: device {} (pairing code {}).\n  \
         Command it from its page in the web app, or with: tether cmd {} lock_screen --wait\n\n",
        d.device_id,
        d.pairing_code,
        shell_word(device_name)
    )
}

/// A name as one shell word: quoted if it has anything but letters, digits, `-_.`.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Whether the URL's host is this machine only (a phone cannot open it).
fn is_loopback(url: &str) -> bool {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests;
