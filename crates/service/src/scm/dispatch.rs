//! The entry the SCM starts. `StartServiceCtrlDispatcherW` calls back a plain
//! `extern "system" fn` with no context pointer, so the binary's main is parked in a
//! process-wide slot before the dispatcher starts and taken out by that callback: the
//! SCM runs one service per process, once.

// Why unsafe is allowed here: `define_windows_service!` expands to the `extern "system"`
// entry the SCM calls, which turns the raw argv it is given into strings in an `unsafe`
// block. That expansion is the only unsafe code in this crate.
#![allow(
    unsafe_code,
    reason = "the SCM's extern \"system\" service entry (see above)"
)]

use std::ffi::OsString;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

use crate::ServiceError;

/// What the service runs: given the token the SCM's Stop fires, returns the exit code.
type Body = Box<dyn FnOnce(CancellationToken) -> u8 + Send>;

/// The service's name and main, parked for the SCM's callback.
static PARKED: Mutex<Option<(String, Body)>> = Mutex::new(None);

define_windows_service!(ffi_service_main, service_main);

/// Runs `body` as the service `name`: connects to the SCM (this blocks the calling thread
/// until the service has stopped), reports StartPending, Running while `body` runs,
/// StopPending and Stopped with `body`'s exit code. The SCM's Stop and Shutdown controls
/// cancel the token `body` is given. Fails at once when the process was not started by
/// the SCM.
pub fn run_as_service<F>(name: &str, body: F) -> Result<(), ServiceError>
where
    F: FnOnce(CancellationToken) -> u8 + Send + 'static,
{
    {
        let mut slot = PARKED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Some((name.to_owned(), Box::new(body)));
    }
    service_dispatcher::start(name, ffi_service_main).map_err(|e| ServiceError::Scm {
        what: format!(
            "connecting {name} to the service control manager (`service run` is only for the \
             SCM to start; use `run` at a prompt)"
        ),
        reason: e.to_string(),
    })
}

fn service_main(_args: Vec<OsString>) {
    let parked = PARKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some((name, body)) = parked else {
        tracing::error!("the service was started without a main to run");
        return;
    };
    let token = CancellationToken::new();
    let handler_token = token.clone();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            handler_token.cancel();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let status = match service_control_handler::register(&name, handler) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the service control handler");
            return;
        }
    };
    let report = |state, accept, exit: ServiceExitCode, wait_s: u64| {
        let r = status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code: exit,
            checkpoint: 0,
            wait_hint: Duration::from_secs(wait_s),
            process_id: None,
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, ?state, "cannot report the service status");
        }
    };
    let none = ServiceControlAccept::empty();
    report(
        ServiceState::StartPending,
        none,
        ServiceExitCode::NO_ERROR,
        10,
    );
    report(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        ServiceExitCode::NO_ERROR,
        0,
    );
    let code = body(token);
    report(
        ServiceState::StopPending,
        none,
        ServiceExitCode::NO_ERROR,
        10,
    );
    let exit = if code == 0 {
        ServiceExitCode::NO_ERROR
    } else {
        ServiceExitCode::ServiceSpecific(u32::from(code))
    };
    report(ServiceState::Stopped, none, exit, 0);
}
