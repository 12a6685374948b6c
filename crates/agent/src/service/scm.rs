//! The Windows service: `tether-agent service install|uninstall|start|stop|run`.
//!
//! The service runs `tether-agent service run <run options>` as the virtual account
//! `NT SERVICE\tether-agent`. Its state dir (`%ProgramData%\Tether\agent` unless given)
//! loses the ACL inherited from `%ProgramData%` (where every user may read) and is
//! granted to SYSTEM, Administrators and that account only. By default the agent calls
//! the helper on its pipe and verifies it with the helper's key from the helper's state
//! dir, which `tether-helper service install` lets this account read.

use std::path::PathBuf;

use tether_service::acl::{Grant, Rights, restrict_dir};
use tether_service::sid::service_sid;
use tether_service::{Account, DEFAULT_PIPE, ServiceSpec, program_data_dir, scm};

use super::{SERVICE_NAME, plan};
use crate::cli::{InstallArgs, RunArgs, ServiceInstallArgs};
use crate::error::AgentError;

/// The helper's public key in its default state dir.
fn default_helper_key() -> PathBuf {
    program_data_dir(std::env::var_os("ProgramData"), "helper").join("helper.pub")
}

/// The `run` options the service is installed with.
fn run_args(a: ServiceInstallArgs) -> RunArgs {
    let (helper_socket, helper_key_file) = if a.no_helper {
        (None, None)
    } else {
        (
            Some(a.helper_pipe.unwrap_or_else(|| PathBuf::from(DEFAULT_PIPE))),
            Some(a.helper_key_file.unwrap_or_else(default_helper_key)),
        )
    };
    RunArgs {
        server: a.server,
        state_dir: a
            .state_dir
            .unwrap_or_else(|| program_data_dir(std::env::var_os("ProgramData"), "agent")),
        trust: a.trust,
        device_name: a.device_name,
        queue_max: crate::queue::DEFAULT_MAX_ENTRIES,
        queue_max_bytes: crate::queue::DEFAULT_MAX_BYTES,
        telemetry_interval_s: None,
        helper_socket,
        helper_key_file,
    }
}

pub(super) fn install(a: ServiceInstallArgs) -> Result<(), AgentError> {
    let start = a.start;
    let run = run_args(a);
    // The directory belongs to the service's account before anything is written to it.
    restrict_dir(
        &run.state_dir,
        &[Grant {
            sid: service_sid(SERVICE_NAME),
            rights: Rights::Modify,
        }],
    )?;
    let plan = plan(InstallArgs {
        run,
        unit_dir: None,
        enable: false,
    })?;
    let logs = tether_service::log::logs_dir(&plan.state_dir);
    tether_service::log::prepare_dir(&logs)?;
    // `plan` starts the arguments with `run`; the service's start with `service run`.
    let run_options = plan.args.get(1..).unwrap_or_default();
    let spec = ServiceSpec::new(
        SERVICE_NAME,
        "Tether agent",
        "Keeps this PC reachable by its owner through the Tether server and carries out \
         the commands they sign.",
        plan.exe.clone(),
        run_options,
        Account::Virtual,
    );
    for w in scm::install(&spec)? {
        eprintln!("warning: {w}");
    }
    say!("Installed the {SERVICE_NAME} service (account NT SERVICE\\{SERVICE_NAME}).");
    say!("It runs: {} {}", plan.exe.display(), spec.args.join(" "));
    say!("State dir: {}", plan.state_dir.display());
    say!(
        "Its log: {}",
        logs.join(format!("{SERVICE_NAME}.log")).display()
    );
    if start {
        scm::start(SERVICE_NAME)?;
        say!("{SERVICE_NAME} is starting.");
    } else {
        say!("Start it with: tether-agent service start");
    }
    say!(
        "If this PC is not paired yet, its pair URL and QR code are in {}\\pairing.json and \
         pair-qr.png (readable by Administrators).",
        plan.state_dir.display()
    );
    Ok(())
}

pub(super) fn uninstall() -> Result<(), AgentError> {
    if scm::uninstall(SERVICE_NAME)? {
        say!(
            "Removed the {SERVICE_NAME} service. The state dir (this PC's key and pairing) is kept."
        );
    } else {
        say!("The {SERVICE_NAME} service is not installed: nothing to remove.");
    }
    Ok(())
}

pub(super) fn start() -> Result<(), AgentError> {
    scm::start(SERVICE_NAME)?;
    say!("{SERVICE_NAME} is starting.");
    Ok(())
}

pub(super) fn stop() -> Result<(), AgentError> {
    scm::stop(SERVICE_NAME)?;
    say!("{SERVICE_NAME} has stopped.");
    Ok(())
}

/// Under the SCM: the same `run` as at a prompt, stopped by the SCM's Stop and Shutdown.
pub(super) async fn run(args: RunArgs) -> Result<(), AgentError> {
    let handle = tokio::runtime::Handle::current();
    let dispatcher = tokio::task::spawn_blocking(move || {
        scm::run_as_service(SERVICE_NAME, move |stop| {
            match handle.block_on(crate::run_until(args, stop)) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "tether-agent stopped with an error");
                    e.exit_code()
                }
            }
        })
    });
    dispatcher
        .await
        .map_err(|e| AgentError::Unsupported(format!("the service dispatcher failed: {e}")))??;
    Ok(())
}
