//! `tether-agent install` and `uninstall`: the agent as a system service that runs
//! `tether-agent run` at every boot. On Linux a systemd unit; the Windows service comes
//! with the Windows service work.

use std::path::PathBuf;

use crate::cli::{InstallArgs, UninstallArgs};
use crate::config::RunConfig;
use crate::error::AgentError;
use crate::state::StateDir;

#[cfg(unix)]
pub mod systemd;

/// The service's name.
pub const SERVICE_NAME: &str = "tether-agent";

/// What `install` settled: the binary and the `run` arguments it will be started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    /// The agent binary (absolute).
    pub exe: PathBuf,
    /// The arguments after it, starting with `run`.
    pub args: Vec<String>,
    /// The state directory (absolute), which the service may write.
    pub state_dir: PathBuf,
}

/// Checks the `run` options and makes every path in them absolute, so the service does
/// not depend on the directory `install` ran in.
pub fn plan(args: InstallArgs) -> Result<ServicePlan, AgentError> {
    let mut cfg = RunConfig::from_args(args.run)?;
    let state = StateDir::open(&cfg.state_dir)?;
    let state_dir = absolute(state.root())?;
    if cfg.server.is_none() && state.server()?.is_none() {
        return Err(AgentError::Config(
            "--server is required (the state dir does not name a server yet)".into(),
        ));
    }
    if let crate::config::TrustSource::CaFile(p) = &mut cfg.trust {
        *p = absolute(p)?;
    }
    cfg.state_dir.clone_from(&state_dir);
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(AgentError::io("the tether-agent binary"))?;
    Ok(ServicePlan {
        exe,
        args: cfg.to_run_args(),
        state_dir,
    })
}

fn absolute(p: &std::path::Path) -> Result<PathBuf, AgentError> {
    p.canonicalize().map_err(AgentError::io(p))
}

/// `tether-agent install`.
pub fn install(args: InstallArgs) -> Result<(), AgentError> {
    #[cfg(unix)]
    {
        let unit_dir = args
            .unit_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(systemd::SYSTEM_UNIT_DIR));
        let enable = args.enable;
        let plan = plan(args)?;
        systemd::install(&plan, &unit_dir, enable)
    }
    #[cfg(not(unix))]
    {
        let _ = args;
        Err(not_here())
    }
}

/// `tether-agent uninstall`.
pub fn uninstall(args: UninstallArgs) -> Result<(), AgentError> {
    #[cfg(unix)]
    {
        let unit_dir = args
            .unit_dir
            .unwrap_or_else(|| PathBuf::from(systemd::SYSTEM_UNIT_DIR));
        systemd::uninstall(&unit_dir, args.disable)
    }
    #[cfg(not(unix))]
    {
        let _ = args;
        Err(not_here())
    }
}

#[cfg(not(unix))]
fn not_here() -> AgentError {
    AgentError::Unsupported(
        "the Windows service comes with the Windows service work and is not in this version; \
         run `tether-agent run` meanwhile"
            .into(),
    )
}
