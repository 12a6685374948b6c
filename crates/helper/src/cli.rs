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
/// The helper listens on a local socket only. It accepts `helper_request` envelopes signed
/// by the agent's key, from a process that passes the peer check (an allowed uid and, with
/// --agent-exe, the agent's executable), and answers with `helper_response` envelopes
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
    /// Serve the agent's requests on a Unix domain socket until SIGTERM or Ctrl-C.
    Run(RunArgs),
    /// Print the helper's public key (unpadded base64url), creating the key on first use.
    /// This is what the agent is given as `helper.pub` to verify responses.
    Pubkey(PubkeyArgs),
}

/// Which executor carries requests out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecutorKind {
    /// Perform nothing: record each execution as a JSON line (tests and demos); honours
    /// `simulate`.
    Recording,
    /// Perform the operations on this machine (loginctl, systemctl, journalctl, …).
    System,
}

/// `tether-helper run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The Unix socket to listen on (a stale socket there is replaced).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// The helper's state directory: its key, helper.pub, the agent_sequence mark, the
    /// execution journal and artifacts.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The agent's Ed25519 public key (unpadded base64url, the agent's agent.pub): every
    /// request must be signed by it.
    #[arg(long, value_name = "FILE")]
    pub agent_key_file: PathBuf,
    /// Only a process running this executable may connect (checked through
    /// /proc/PID/exe of the caller).
    #[arg(long, value_name = "PATH")]
    pub agent_exe: Option<PathBuf>,
    /// A uid allowed to connect (repeatable). Default: the owner of the agent key file.
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

#[cfg(not(unix))]
async fn run(_args: RunArgs) -> Result<(), HelperError> {
    Err(HelperError::Unsupported(
        "tether-helper run is not yet available on Windows (its named-pipe service comes with a later release)".into(),
    ))
}

#[cfg(unix)]
async fn run(args: RunArgs) -> Result<(), HelperError> {
    use std::sync::Arc;

    use tether_proto::{Clock, SystemClock};
    use tokio_util::sync::CancellationToken;

    use crate::executor::{Artifacts, Executor, Manifest, RecordingExecutor, SystemExecutor};
    use crate::server::{Helper, HelperConfig};
    use crate::state::{artifacts_dir, files};
    use crate::{keys, platform};

    let agent_key = keys::read_public_key_file(&args.agent_key_file)?;
    let owner = platform::owner_of(&args.agent_key_file)
        .map_err(|e| HelperError::io(&args.agent_key_file, e))?;
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
        socket: args.socket,
        state_dir: args.state_dir,
        agent_key,
        allow_uids,
        agent_exe: args.agent_exe,
        socket_owner: owner,
    };
    let executor_name = executor.name();
    let helper = Helper::bind(config, executor, clock).await?;
    let stopped = platform::shutdown_signal();
    println!(
        "tether-helper listening on {} ({executor_name} executor)",
        helper.socket().display()
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
