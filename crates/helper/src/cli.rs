//! The command line: `tether-helper run …`, `tether-helper pubkey …`,
//! `tether-helper --list-opcodes`. Arguments are checked here, once, into the
//! configuration the service gets.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use tether_proto::helper::Opcode;
use tether_proto::validate::b64url_encode;

use crate::error::HelperError;
use crate::state::StateDir;

/// Tether helper: runs allow-listed privileged operations for the local Tether agent.
///
/// The helper listens on a local socket (Windows: a named pipe) only. It accepts
/// `helper_request` envelopes signed by the agent's key, from a process that passes the peer
/// check (an allowed uid — Windows: the pipe's DACL and optionally the agent's account — and,
/// with --agent-exe, the agent's executable), and answers with `helper_response` envelopes
/// signed by its own key (see `tether-helper pubkey`).
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// List the opcodes this helper serves (name and number) and exit.
    #[arg(long)]
    pub list_opcodes: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the agent's requests on a Unix domain socket (Windows: a named pipe) until
    /// SIGTERM or Ctrl-C.
    Run(RunArgs),
    /// Print the helper's public key (unpadded base64url), creating the key on first use.
    /// This is what the agent is given as `helper.pub` to verify responses.
    Pubkey(PubkeyArgs),
    /// The Windows service: install, uninstall, start, stop (Windows only; on Linux the
    /// helper runs as a systemd unit).
    #[command(hide = cfg!(not(windows)))]
    Service(ServiceArgs),
    /// What the Windows helper starts in the signed-in user's session to lock it or
    /// capture its screen. Not for use at a prompt.
    #[command(hide = true)]
    Session(SessionArgs),
}

/// `tether-helper service`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// What to do with the service.
    #[command(subcommand)]
    pub action: ServiceAction,
}

/// `tether-helper service …`.
#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Register the `tether-helper` service (started at boot, as LocalSystem, restarted
    /// after 5 s, 30 s and 60 s when it fails) with the system executor, give its state
    /// dir to SYSTEM and Administrators (the agent's account may read it and remove
    /// artifacts), and write its `run` options. Run it again to change them. Needs an
    /// elevated prompt.
    Install(ServiceInstallArgs),
    /// Stop and remove the service (the state dir is kept).
    Uninstall,
    /// Start the installed service.
    Start,
    /// Stop the service and wait until it has stopped.
    Stop,
    /// What the service control manager starts: `run` under the SCM, stopped by its
    /// Stop and Shutdown controls. Not for use at a prompt.
    #[command(hide = true)]
    Run(RunArgs),
}

/// `tether-helper service install`.
#[derive(Debug, Args)]
pub struct ServiceInstallArgs {
    /// The service's state directory [default: %ProgramData%\Tether\helper].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The named pipe to serve [default: \\.\pipe\tether-helper].
    #[arg(long, value_name = "NAME")]
    pub pipe: Option<String>,
    /// The agent's public key file [default: %ProgramData%\Tether\agent\agent.pub].
    #[arg(long, value_name = "FILE")]
    pub agent_key_file: Option<PathBuf>,
    /// The agent's executable, the only one served [default: tether-agent.exe beside
    /// this tether-helper.exe].
    #[arg(long, value_name = "PATH")]
    pub agent_exe: Option<PathBuf>,
    /// The manifest of installed binaries for attestation.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Also start the service now.
    #[arg(long)]
    pub start: bool,
}

/// `tether-helper session`.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// What to do in the session.
    #[command(subcommand)]
    pub action: SessionAction,
}

/// `tether-helper session …`.
#[derive(Debug, Subcommand)]
pub enum SessionAction {
    /// Lock this session (LockWorkStation).
    Lock,
    /// Capture this session's screen as a PNG into FILE (`-`: stdout).
    Screenshot {
        /// Where the PNG goes.
        file: PathBuf,
    },
}

/// Which executor carries requests out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecutorKind {
    /// Perform nothing: record each execution as a JSON line (tests and demos); honours
    /// `simulate`.
    Recording,
    /// Perform the operations on this machine (Linux: loginctl, systemctl, journalctl, …;
    /// Windows: Win32 calls, wevtutil).
    System,
}

/// `tether-helper run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The Unix socket to listen on (a stale socket there is replaced).
    #[cfg(unix)]
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// The named pipe to serve. The helper refuses to start if the name exists already.
    #[cfg(windows)]
    #[arg(long, value_name = "NAME", default_value = crate::server::DEFAULT_PIPE)]
    pub pipe: String,
    /// The account the agent runs as (a SID, or a name such as NT SERVICE\tether-agent):
    /// the pipe's DACL admits it besides SYSTEM and Administrators.
    #[cfg(windows)]
    #[arg(long, value_name = "ACCOUNT", default_value = crate::server::DEFAULT_AGENT_ACCOUNT)]
    pub agent_account: String,
    /// Serve only a caller whose process token's user is --agent-account (then SYSTEM and
    /// Administrators, which the DACL also lets open the pipe, are refused 6006).
    #[cfg(windows)]
    #[arg(long)]
    pub require_agent_account: bool,
    /// The helper's state directory: its key, helper.pub, the agent_sequence mark, the
    /// execution journal and artifacts.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The agent's Ed25519 public key (unpadded base64url, the agent's agent.pub): every
    /// request must be signed by it.
    #[arg(long, value_name = "FILE")]
    pub agent_key_file: PathBuf,
    /// When the agent key file does not exist yet, wait for it (checking every second)
    /// instead of failing: the agent writes it when it first starts, which may be after
    /// the helper (the Windows service is installed with this).
    #[arg(long)]
    pub wait_for_agent_key: bool,
    /// Only a process running this executable may connect (checked through
    /// /proc/PID/exe of the caller; Windows: its image path from QueryFullProcessImageNameW).
    #[arg(long, value_name = "PATH")]
    pub agent_exe: Option<PathBuf>,
    /// A uid allowed to connect (repeatable). Default: the owner of the agent key file.
    #[cfg(unix)]
    #[arg(long = "allow-uid", value_name = "UID")]
    pub allow_uids: Vec<u32>,
    /// Which executor carries requests out. The default records what it would do and
    /// performs nothing: real actions on this PC (locking, rebooting…) need
    /// `--executor system` explicitly.
    #[arg(long, value_enum, default_value_t = ExecutorKind::Recording)]
    pub executor: ExecutorKind,
    /// The recording executor's record file (default: STATE_DIR/recorded.jsonl).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// The system executor's manifest of installed binaries for attestation and the tamper
    /// check: {"tether-agent": {"path","sha256"}, "tether-helper": {…}}.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
}

/// `tether-helper pubkey`.
#[derive(Debug, Args)]
pub struct PubkeyArgs {
    /// The helper's state directory.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
}

/// Runs a parsed command line to its exit code.
pub async fn execute(cli: Cli) -> ExitCode {
    if cli.list_opcodes {
        println!("tether-helper {}", env!("CARGO_PKG_VERSION"));
        for op in Opcode::ALL {
            println!("  {:#06x}  {}", op.number(), op.name());
        }
        return ExitCode::SUCCESS;
    }
    let result = match cli.command {
        Some(Command::Run(args)) => run(args).await,
        Some(Command::Pubkey(args)) => pubkey(&args),
        Some(Command::Service(args)) => crate::service::service(args).await,
        Some(Command::Session(args)) => crate::service::session(&args),
        None => {
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn pubkey(args: &PubkeyArgs) -> Result<(), HelperError> {
    let state = StateDir::open(&args.state_dir)?;
    println!("{}", b64url_encode(&state.public_key()));
    Ok(())
}

#[cfg(not(any(unix, windows)))]
async fn run(_args: RunArgs) -> Result<(), HelperError> {
    Err(HelperError::Unsupported(
        "tether-helper run needs a Unix socket or a Windows named pipe".into(),
    ))
}

#[cfg(any(unix, windows))]
async fn run(args: RunArgs) -> Result<(), HelperError> {
    run_until(args, tokio_util::sync::CancellationToken::new()).await
}

/// `run`, also stopped when `external` is cancelled (the Windows service's Stop), besides
/// the platform's stop signals.
#[cfg(any(unix, windows))]
pub(crate) async fn run_until(
    args: RunArgs,
    external: tokio_util::sync::CancellationToken,
) -> Result<(), HelperError> {
    use std::sync::Arc;

    use tether_proto::{Clock, SystemClock};
    use tokio_util::sync::CancellationToken;

    use crate::executor::{Artifacts, Executor, Manifest, RecordingExecutor, SystemExecutor};
    use crate::server::{Helper, HelperConfig};
    use crate::state::{artifacts_dir, files};
    use crate::{keys, platform};

    if args.wait_for_agent_key && !args.agent_key_file.exists() {
        tracing::info!(
            path = %args.agent_key_file.display(),
            "waiting for the agent's key (the agent writes it when it first starts)"
        );
        let stopped = platform::shutdown_signal();
        tokio::pin!(stopped);
        while !args.agent_key_file.exists() {
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                () = external.cancelled() => return Ok(()),
                () = &mut stopped => return Ok(()),
            }
        }
        // The agent writes it atomically; read it once it is there.
        tracing::info!("the agent's key is there");
    }
    let agent_key = keys::read_public_key_file(&args.agent_key_file)?;
    let owner = platform::owner_of(&args.agent_key_file)
        .map_err(|e| HelperError::io(&args.agent_key_file, e))?;
    #[cfg(unix)]
    let allow_uids = match (args.allow_uids.is_empty(), owner) {
        (false, _) => args.allow_uids,
        (true, Some((uid, _))) => vec![uid],
        (true, None) => return Err(HelperError::Config("give --allow-uid".into())),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let artifacts = Artifacts::new(artifacts_dir(&args.state_dir), owner);
    let executor: Arc<dyn Executor> = match args.executor {
        ExecutorKind::Recording => {
            if args.manifest.is_some() {
                return Err(HelperError::Config(
                    "--manifest is for the system executor".into(),
                ));
            }
            tracing::warn!(
                "recording executor: requests are recorded, nothing is performed on this machine"
            );
            let record = args
                .record
                .unwrap_or_else(|| args.state_dir.join(files::RECORDED));
            Arc::new(RecordingExecutor::new(
                record,
                artifacts,
                Arc::clone(&clock),
            ))
        }
        ExecutorKind::System => {
            if args.record.is_some() {
                return Err(HelperError::Config(
                    "--record is for the recording executor".into(),
                ));
            }
            if let Some(m) = &args.manifest {
                Manifest::load(m)?;
            }
            Arc::new(SystemExecutor::new(
                args.state_dir.clone(),
                artifacts,
                args.manifest,
            ))
        }
    };
    let config = HelperConfig {
        #[cfg(unix)]
        socket: args.socket,
        #[cfg(windows)]
        pipe: crate::server::PipeConfig {
            name: args.pipe,
            agent_account: args.agent_account,
            require_agent_account: args.require_agent_account,
        },
        state_dir: args.state_dir,
        agent_key,
        #[cfg(unix)]
        allow_uids,
        agent_exe: args.agent_exe,
        #[cfg(unix)]
        socket_owner: owner,
    };
    let executor_name = executor.name();
    let helper = Helper::bind(config, executor, clock).await?;
    let stopped = platform::shutdown_signal();
    println!(
        "tether-helper listening on {} ({executor_name} executor)",
        helper.endpoint()
    );
    let stop = CancellationToken::new();
    let serving = helper.run(stop.clone());
    tokio::pin!(serving);
    tokio::select! {
        r = &mut serving => return r,
        () = stopped => {
            tracing::info!("stopping");
            stop.cancel();
        }
        () = external.cancelled() => {
            tracing::info!("stopping (service stop)");
            stop.cancel();
        }
    }
    serving.await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
