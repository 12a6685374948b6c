//! One module per command; each prints its own result through [`Output`](crate::output::Output).

mod admin;
mod alerts;
mod artifact;
mod cmd;
mod devices;
mod errors;
mod history;
mod keys;
mod login;
mod metrics;
mod pair;
mod policy;
mod register;
mod status;
mod target;
mod totp;
mod watch;
mod whoami;

use crate::args::{ArtifactCommand, Command};
use crate::context::Ctx;
use crate::error::CliError;

/// Runs a command.
pub(crate) async fn run(command: Command, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        Command::Register {
            email,
            password_stdin,
        } => register::run(ctx, &email, password_stdin).await,
        Command::Login {
            email,
            password_stdin,
            totp,
        } => login::login(ctx, email, password_stdin, totp).await,
        Command::Logout { all } => login::logout(ctx, all).await,
        Command::Status => status::run(ctx).await,
        Command::Whoami => whoami::run(ctx).await,
        Command::Totp(c) => totp::run(ctx, c).await,
        Command::Pair { url_or_token } => pair::run(ctx, &url_or_token).await,
        Command::Devices => devices::list(ctx).await,
        Command::Device { id } => devices::show(ctx, &id).await,
        Command::Watch { devices } => watch::run(ctx, &devices).await,
        Command::Alerts { all, ack } => alerts::run(ctx, all, ack.as_deref()).await,
        Command::Metrics { device, daily, .. } => metrics::run(ctx, &device, daily).await,
        Command::Cmd(args) => cmd::run(ctx, args).await,
        Command::Commands { device, limit } => history::list(ctx, &device, limit).await,
        Command::ShowCommand { id, device } => history::show(ctx, &id, device.as_deref()).await,
        Command::Artifact(ArtifactCommand::Get {
            artifact_id,
            output,
            force,
        }) => artifact::get(ctx, &artifact_id, output.as_deref(), force).await,
        Command::Admin(c) => admin::run(ctx, c).await,
        Command::Policy(c) => policy::run(ctx, c).await,
        Command::StepUp { totp } => policy::step_up(ctx, totp).await,
        Command::Approvals => policy::approvals(ctx).await,
        Command::Approve {
            command_id,
            unsigned,
        } => policy::approve(ctx, &command_id, unsigned).await,
        Command::Keys(c) => keys::run(ctx, c).await,
        Command::Errors { code } => errors::run(ctx, code.as_deref()),
    }
}
