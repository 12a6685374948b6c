//! The agent as a system service that runs `tether-agent run` at every boot.
//!
//! * Linux: `tether-agent install` / `uninstall` write a systemd unit ([`systemd`]).
//! * Windows: `tether-agent service install|uninstall|start|stop` register the service
//!   with the service control manager, and the SCM starts `tether-agent service run …`
//!   (`scm`, through the `tether-service` crate).
//!
//! Both build the service's command line the same way ([`plan`]); each subcommand of the
//! other platform says what to use instead.

use std::path::PathBuf;

use crate::cli::{InstallArgs, ServiceAction, ServiceArgs, UninstallArgs};
use crate::config::RunConfig;
use crate::error::AgentError;
use crate::state::StateDir;

#[cfg(windows)]
mod scm;
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
        .map_err(AgentError::io("the tether-agent binary"))
        .and_then(|p| absolute(&p))?;
    Ok(ServicePlan {
        exe,
        args: cfg.to_run_args(),
        state_dir,
    })
}

fn absolute(p: &std::path::Path) -> Result<PathBuf, AgentError> {
    // Windows' canonical form is a `\\?\` verbatim path, which the SCM's command line
    // and people reading it do not need; an absolute path of an existing file is enough.
    #[cfg(windows)]
    let abs = std::path::absolute(p).and_then(|a| a.metadata().map(|_| a));
    #[cfg(not(windows))]
    let abs = p.canonicalize();
    abs.map_err(AgentError::io(p))
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
        "`install` and `uninstall` write a systemd unit (Linux); on Windows use `tether-agent \
         service install` and `tether-agent service uninstall`"
            .into(),
    )
}

/// `tether-agent service …`: the Windows service.
pub async fn service(args: ServiceArgs) -> Result<(), AgentError> {
    #[cfg(windows)]
    {
        match args.action {
            ServiceAction::Install(a) => scm::install(a),
            ServiceAction::Uninstall => scm::uninstall(),
            ServiceAction::Start => scm::start(),
            ServiceAction::Stop => scm::stop(),
            ServiceAction::Run(run) => scm::run(run).await,
        }
    }
    #[cfg(not(windows))]
    {
        let _: ServiceAction = args.action;
        Err(AgentError::Unsupported(
            "`tether-agent service` manages the Windows service. On Linux the agent runs as a \
             systemd unit: `tether-agent install --enable` installs and starts it, `systemctl \
             start|stop tether-agent` starts and stops it, `tether-agent uninstall --disable` \
             removes it"
                .into(),
        ))
    }
}
