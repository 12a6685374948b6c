//! The Windows service: `tether-helper service install|uninstall|start|stop|run`.
//!
//! The service runs `tether-helper service run <run options>` as LocalSystem with the
//! system executor, serving the agent's pipe and only the agent's account and executable.
//! Its state dir (`%ProgramData%\Tether\helper` unless given) loses the ACL inherited
//! from `%ProgramData%`: SYSTEM and Administrators have full control, the agent's virtual
//! account may read it (`helper.pub`) and may remove what it uploaded from `artifacts`.

use std::path::{Path, PathBuf};

use tether_service::acl::{Grant, Rights, restrict_dir};
use tether_service::sid::service_sid;
use tether_service::{AGENT_SERVICE, Account, ServiceError, ServiceSpec, program_data_dir, scm};

use super::SERVICE_NAME;
use crate::cli::{RunArgs, ServiceInstallArgs};
use crate::error::HelperError;
use crate::server::{DEFAULT_AGENT_ACCOUNT, DEFAULT_PIPE};
use crate::state::artifacts_dir;

fn service_err(e: ServiceError) -> HelperError {
    match e {
        ServiceError::Unsupported(m) => HelperError::Unsupported(m),
        other => HelperError::Config(other.to_string()),
    }
}

fn absolute(p: &Path) -> Result<PathBuf, HelperError> {
    std::path::absolute(p).map_err(|e| HelperError::io(p, e))
}

/// The `run` options of the service, as arguments after `service run`.
pub(crate) fn run_options(
    pipe: &str,
    state_dir: &Path,
    agent_key_file: &Path,
    agent_exe: &Path,
    manifest: Option<&Path>,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "--pipe",
        pipe,
        "--agent-account",
        DEFAULT_AGENT_ACCOUNT,
        "--require-agent-account",
        "--state-dir",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    a.push(state_dir.display().to_string());
    a.push("--agent-key-file".into());
    a.push(agent_key_file.display().to_string());
    a.push("--wait-for-agent-key".into());
    a.push("--agent-exe".into());
    a.push(agent_exe.display().to_string());
    a.push("--executor".into());
    a.push("system".into());
    if let Some(m) = manifest {
        a.push("--manifest".into());
        a.push(m.display().to_string());
    }
    a
}

pub(super) fn install(a: ServiceInstallArgs) -> Result<(), HelperError> {
    let program_data = std::env::var_os("ProgramData");
    let exe = std::env::current_exe().map_err(|e| HelperError::io("tether-helper.exe", e))?;
    let state_dir = absolute(
        &a.state_dir
            .unwrap_or_else(|| program_data_dir(program_data.clone(), "helper")),
    )?;
    let agent_key_file = absolute(
        &a.agent_key_file
            .unwrap_or_else(|| program_data_dir(program_data, "agent").join("agent.pub")),
    )?;
    let agent_exe = match a.agent_exe {
        Some(p) => absolute(&p)?,
        None => exe.with_file_name("tether-agent.exe"),
    };
    let manifest = a.manifest.as_deref().map(absolute).transpose()?;
    if let Some(m) = &manifest {
        crate::executor::Manifest::load(m)?;
    }
    let agent = service_sid(AGENT_SERVICE);
    restrict_dir(
        &state_dir,
        &[Grant {
            sid: agent.clone(),
            rights: Rights::Read,
        }],
    )
    .map_err(service_err)?;
    restrict_dir(
        &artifacts_dir(&state_dir),
        &[Grant {
            sid: agent,
            rights: Rights::Modify,
        }],
    )
    .map_err(service_err)?;
    let logs = tether_service::log::logs_dir(&state_dir);
    tether_service::log::prepare_dir(&logs).map_err(service_err)?;
    let pipe = a.pipe.unwrap_or_else(|| DEFAULT_PIPE.to_owned());
    let run = run_options(
        &pipe,
        &state_dir,
        &agent_key_file,
        &agent_exe,
        manifest.as_deref(),
    );
    let spec = ServiceSpec::new(
        SERVICE_NAME,
        "Tether helper",
        "Carries out the Tether agent's signed requests that need privileges (lock, log off, \
         restart, shut down, screenshot, event logs, attestation).",
        exe.clone(),
        &run,
        Account::LocalSystem,
    );
    for w in scm::install(&spec).map_err(service_err)? {
        eprintln!("warning: {w}");
    }
    println!("Installed the {SERVICE_NAME} service (LocalSystem).");
    println!("It runs: {} {}", exe.display(), spec.args.join(" "));
    println!(
        "Its log: {}",
        logs.join(format!("{SERVICE_NAME}.log")).display()
    );
    if !agent_key_file.exists() {
        println!(
            "Note: {} does not exist yet: the service waits for it (tether-agent writes it \
             when it first starts).",
            agent_key_file.display()
        );
    }
    if a.start {
        scm::start(SERVICE_NAME).map_err(service_err)?;
        println!("{SERVICE_NAME} is starting.");
    } else {
        println!("Start it with: tether-helper service start");
    }
    Ok(())
}

pub(super) fn uninstall() -> Result<(), HelperError> {
    if scm::uninstall(SERVICE_NAME).map_err(service_err)? {
        println!("Removed the {SERVICE_NAME} service. The state dir is kept.");
    } else {
        println!("The {SERVICE_NAME} service is not installed: nothing to remove.");
    }
    Ok(())
}

pub(super) fn start() -> Result<(), HelperError> {
    scm::start(SERVICE_NAME).map_err(service_err)?;
    println!("{SERVICE_NAME} is starting.");
    Ok(())
}

pub(super) fn stop() -> Result<(), HelperError> {
    scm::stop(SERVICE_NAME).map_err(service_err)?;
    println!("{SERVICE_NAME} has stopped.");
    Ok(())
}

/// Under the SCM: the same `run` as at a prompt, stopped by the SCM's Stop and Shutdown.
pub(super) async fn run(args: RunArgs) -> Result<(), HelperError> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        scm::run_as_service(SERVICE_NAME, move |stop| {
            match handle.block_on(crate::cli::run_until(args, stop)) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "tether-helper stopped with an error");
                    1
                }
            }
        })
    })
    .await
    .map_err(|e| HelperError::Kernel(format!("the service dispatcher failed: {e}")))?
    .map_err(service_err)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, ServiceAction};

    #[test]
    fn the_service_arguments_parse_back_as_service_run() {
        let run = run_options(
            DEFAULT_PIPE,
            Path::new(r"C:\ProgramData\Tether\helper"),
            Path::new(r"C:\ProgramData\Tether\agent\agent.pub"),
            Path::new(r"C:\Program Files\Tether\tether-agent.exe"),
            None,
        );
        let mut argv = vec!["tether-helper".to_owned(), "service".into(), "run".into()];
        argv.extend(run);
        let cli = Cli::try_parse_from(argv).unwrap();
        let Some(Command::Service(s)) = cli.command else {
            panic!("not a service command")
        };
        let ServiceAction::Run(r) = s.action else {
            panic!("not service run")
        };
        assert_eq!(r.pipe, DEFAULT_PIPE);
        assert!(r.require_agent_account);
        assert_eq!(r.agent_account, DEFAULT_AGENT_ACCOUNT);
        assert_eq!(
            r.agent_exe.unwrap(),
            Path::new(r"C:\Program Files\Tether\tether-agent.exe")
        );
    }
}
