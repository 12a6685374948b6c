//! `tether-helper service install|uninstall|start|stop|run` (the Windows service) and
//! `tether-helper session lock|screenshot` (what the Windows executor starts in the
//! signed-in user's session). On Linux the helper runs as a systemd unit and the
//! executor runs the system's tools as root, so both subcommands say they are not used.

#[cfg(windows)]
mod scm;

use crate::cli::{ServiceAction, ServiceArgs, SessionArgs};
use crate::error::HelperError;

/// The service's name.
pub const SERVICE_NAME: &str = "tether-helper";

/// `tether-helper service …`.
pub async fn service(args: ServiceArgs) -> Result<(), HelperError> {
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
        Err(HelperError::Unsupported(
            "`tether-helper service` manages the Windows service. On Linux run the helper as a \
             systemd unit (`tether-helper run …` as root) and start and stop it with systemctl"
                .into(),
        ))
    }
}

/// `tether-helper session …`: runs in the user's session and exits with the Win32 error
/// it met (0 when done).
pub fn session(args: &SessionArgs) -> Result<(), HelperError> {
    #[cfg(windows)]
    {
        use crate::cli::SessionAction;
        use crate::executor::{SessionTask, session_main};
        let task = match &args.action {
            SessionAction::Lock => SessionTask::Lock,
            SessionAction::Screenshot { file } => SessionTask::Screenshot(file.clone()),
        };
        let code = session_main(&task);
        // A Win32 error code is a u32; the process exit code carries it unchanged.
        std::process::exit(i32::from_ne_bytes(code.to_ne_bytes()));
    }
    #[cfg(not(windows))]
    {
        let _ = args;
        Err(HelperError::Unsupported(
            "`tether-helper session` is what the Windows helper starts in a user's session; \
             it is not used on Linux"
                .into(),
        ))
    }
}
