//! Locking, logging off, rebooting and shutting down.

use serde_json::{Value, json};
use tether_proto::helper::PowerParams;

use super::{SHORT_LIMIT, args, run_ok};
use crate::error::HelperError;

pub(super) async fn lock() -> Result<Value, HelperError> {
    run_ok("loginctl", &args(&["lock-sessions"]), SHORT_LIMIT).await?;
    Ok(json!({ "locked": true }))
}

pub(super) async fn logoff() -> Result<Value, HelperError> {
    let list = run_ok(
        "loginctl",
        &args(&["list-sessions", "--no-legend"]),
        SHORT_LIMIT,
    )
    .await?;
    for id in list.lines().filter_map(|l| l.split_whitespace().next()) {
        // Session ids are short alphanumerics; anything else is not passed on as an argument.
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let props = run_ok(
            "loginctl",
            &args(&[
                "show-session",
                id,
                "-p",
                "Type",
                "-p",
                "State",
                "-p",
                "Class",
            ]),
            SHORT_LIMIT,
        )
        .await?;
        if is_active_graphical(&props) {
            run_ok("loginctl", &args(&["terminate-session", id]), SHORT_LIMIT).await?;
            return Ok(json!({ "session": id }));
        }
    }
    Err(HelperError::Kernel(
        "no active graphical session to log off".into(),
    ))
}

/// Whether `loginctl show-session -p Type -p State -p Class` describes an active
/// graphical user session.
fn is_active_graphical(props: &str) -> bool {
    let get = |key: &str| {
        props
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(str::trim)
    };
    matches!(get("Type"), Some("x11" | "wayland" | "mir"))
        && get("State") == Some("active")
        && get("Class") == Some("user")
}

pub(super) async fn power(reboot: bool, p: &PowerParams) -> Result<Value, HelperError> {
    if p.delay_s == 0 {
        let mut a = args(&[if reboot { "reboot" } else { "poweroff" }]);
        if p.force {
            // Ignore inhibitor locks: applications are not asked.
            a.push("-i".into());
        }
        run_ok("systemctl", &a, SHORT_LIMIT).await?;
        return Ok(json!({ "scheduled_in_s": 0 }));
    }
    // shutdown(8) counts in whole minutes: round up so the user gets at least delay_s.
    let minutes = p.delay_s.div_ceil(60);
    let mut a = args(&[if reboot { "-r" } else { "-h" }]);
    a.push(format!("+{minutes}"));
    if !p.reason.is_empty() {
        a.push(p.reason.clone());
    }
    run_ok("shutdown", &a, SHORT_LIMIT).await?;
    Ok(json!({ "scheduled_in_s": minutes.saturating_mul(60) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_active_graphical_user_session_is_logged_off() {
        assert!(is_active_graphical(
            "Type=wayland\nState=active\nClass=user\n"
        ));
        assert!(is_active_graphical("Class=user\nType=x11\nState=active"));
        assert!(!is_active_graphical("Type=tty\nState=active\nClass=user"));
        assert!(!is_active_graphical("Type=x11\nState=online\nClass=user"));
        assert!(!is_active_graphical(
            "Type=x11\nState=active\nClass=greeter"
        ));
        assert!(!is_active_graphical("TypeX=x11\nState=active\nClass=user"));
    }
}
