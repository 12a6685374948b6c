//! The systemd unit: written to `/etc/systemd/system/tether-agent.service` (or
//! `--unit-dir`), enabled only when asked.

use std::path::Path;
use std::process::Command;

use super::{SERVICE_NAME, ServicePlan};
use crate::error::AgentError;

/// Where system units go.
pub const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// The unit's file name.
pub fn unit_file_name() -> String {
    format!("{SERVICE_NAME}.service")
}

/// The unit's text.
pub fn unit(plan: &ServicePlan) -> Result<String, AgentError> {
    let mut exec = vec![quote(&plan.exe.display().to_string())?];
    for a in &plan.args {
        exec.push(quote(a)?);
    }
    let state_dir = quote(&plan.state_dir.display().to_string())?;
    Ok(format!(
        "# Written by `tether-agent install`; remove it with `tether-agent uninstall`.
[Unit]
Description=Tether agent: keeps this PC reachable by its owner
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={exec}
Restart=on-failure
RestartSec=10
# Exit status 2 is a configuration or trust problem: restarting will not fix it.
RestartPreventExitStatus=2
UMask=0077
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths={state_dir}

[Install]
WantedBy=multi-user.target
",
        exec = exec.join(" ")
    ))
}

/// One word of a unit's command line: `%` and `$` doubled (systemd would expand them),
/// and quoted with C escapes unless it is plainly safe. Control characters are refused.
pub fn quote(word: &str) -> Result<String, AgentError> {
    if word.chars().any(char::is_control) {
        return Err(AgentError::Config(format!(
            "{word:?} contains control characters and cannot go into a systemd unit"
        )));
    }
    let escaped = word.replace('%', "%%").replace('$', "$$");
    let plain = !escaped.is_empty()
        && escaped
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._:=@+-,%$".contains(c));
    if plain {
        Ok(escaped)
    } else {
        Ok(format!(
            "\"{}\"",
            escaped.replace('\\', "\\\\").replace('"', "\\\"")
        ))
    }
}

/// Writes the unit; enables and starts it with `enable`, else prints how.
pub fn install(plan: &ServicePlan, unit_dir: &Path, enable: bool) -> Result<(), AgentError> {
    let text = unit(plan)?;
    let path = unit_dir.join(unit_file_name());
    let tmp = unit_dir.join(format!(".{}.tmp", unit_file_name()));
    std::fs::write(&tmp, text.as_bytes())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            AgentError::Io {
                path: path.clone(),
                source: e,
            }
        })?;
    say!("Wrote {}", path.display());
    say!("It runs: {} {}", plan.exe.display(), plan.args.join(" "));
    if enable {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", SERVICE_NAME])?;
        say!("tether-agent is running and starts at every boot.");
    } else {
        say!("To start it now and at every boot, run:");
        say!("  systemctl daemon-reload");
        say!("  systemctl enable --now {SERVICE_NAME}");
    }
    say!(
        "If this PC is not paired yet, its pair URL and QR code appear in `journalctl -u \
         {SERVICE_NAME}` and in {}/pairing.json and pair-qr.png.",
        plan.state_dir.display()
    );
    Ok(())
}

/// Removes the unit. An enabled unit is disabled first with `disable`; without it the
/// unit is left alone and the command to run is printed (systemd cannot disable a unit
/// whose file is gone).
pub fn uninstall(unit_dir: &Path, disable: bool) -> Result<(), AgentError> {
    let name = unit_file_name();
    let path = unit_dir.join(&name);
    if !path.exists() {
        say!("{} does not exist: nothing to remove.", path.display());
        return Ok(());
    }
    if disable {
        systemctl(&["disable", "--now", SERVICE_NAME])?;
    } else if is_enabled(unit_dir, &name) {
        return Err(AgentError::Config(format!(
            "{SERVICE_NAME} is still enabled. Stop and disable it first:\n  systemctl disable \
             --now {SERVICE_NAME}\nor run `tether-agent uninstall --disable` to do both"
        )));
    }
    std::fs::remove_file(&path).map_err(AgentError::io(&path))?;
    say!("Removed {}", path.display());
    if disable {
        systemctl(&["daemon-reload"])?;
    } else {
        say!("It was not enabled. If it is still running, stop it and let systemd forget it:");
        say!("  systemctl stop {SERVICE_NAME}");
        say!("  systemctl daemon-reload");
    }
    say!("The state dir (this PC's key and pairing) is kept; delete it to forget the pairing.");
    Ok(())
}

/// Whether some `*.wants/` directory next to the unit links to it.
fn is_enabled(unit_dir: &Path, name: &str) -> bool {
    std::fs::read_dir(unit_dir)
        .map(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                e.file_name().to_string_lossy().ends_with(".wants")
                    && e.path().join(name).symlink_metadata().is_ok()
            })
        })
        .unwrap_or(false)
}

fn systemctl(args: &[&str]) -> Result<(), AgentError> {
    say!("$ systemctl {}", args.join(" "));
    let status = Command::new("systemctl")
        .args(args)
        .status()
        .map_err(AgentError::io("systemctl"))?;
    if status.success() {
        Ok(())
    } else {
        Err(AgentError::Config(format!(
            "`systemctl {}` failed ({status})",
            args.join(" ")
        )))
    }
}

#[cfg(test)]
mod tests;
