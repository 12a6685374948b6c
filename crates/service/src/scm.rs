//! The service control manager (Windows): install, uninstall, start, stop, and the entry
//! the SCM starts ([`run_as_service`]). Everything here goes through the safe API of the
//! `windows-service` crate; the one piece of unsafe glue (the dispatcher's `extern
//! "system"` entry) is in [`dispatch`].

mod dispatch;

use std::ffi::OsString;
use std::time::{Duration, Instant};

use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceErrorControl, ServiceFailureActions,
    ServiceFailureResetPeriod, ServiceInfo, ServiceStartType, ServiceState, ServiceType,
};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

pub use dispatch::run_as_service;

use crate::{Recovery, ServiceError, ServiceSpec};

/// How long `stop` and `uninstall` wait for a running service to stop.
const STOP_WAIT: Duration = Duration::from_secs(30);
/// `ERROR_SERVICE_EXISTS`.
const ERROR_SERVICE_EXISTS: i32 = 1073;
/// `ERROR_SERVICE_DOES_NOT_EXIST`.
const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
/// `ERROR_SERVICE_NOT_ACTIVE`.
const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;

fn scm_err(what: impl Into<String>) -> impl FnOnce(windows_service::Error) -> ServiceError {
    let what = what.into();
    move |e| ServiceError::Scm {
        what,
        reason: describe(&e),
    }
}

fn describe(e: &windows_service::Error) -> String {
    match e {
        windows_service::Error::Winapi(io) => io.to_string(),
        other => other.to_string(),
    }
}

fn os_code(e: &windows_service::Error) -> Option<i32> {
    match e {
        windows_service::Error::Winapi(io) => io.raw_os_error(),
        _ => None,
    }
}

/// The SCM's configuration for `spec`: an own-process service started at boot, its
/// command line and its account (a virtual account has no password).
pub fn service_info(spec: &ServiceSpec) -> ServiceInfo {
    ServiceInfo {
        name: OsString::from(&spec.name),
        display_name: OsString::from(&spec.display_name),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: spec.exe.clone(),
        launch_arguments: spec.args.iter().map(OsString::from).collect(),
        dependencies: spec
            .dependencies
            .iter()
            .map(|d| windows_service::service::ServiceDependency::Service(OsString::from(d)))
            .collect(),
        account_name: spec.account_name().map(OsString::from),
        account_password: None,
    }
}

/// The SCM's failure actions for `recovery`. Delays that do not fit the SCM's
/// milliseconds and seconds are capped rather than passed on (the crate would panic).
pub fn failure_actions(recovery: &Recovery) -> ServiceFailureActions {
    let cap_ms = Duration::from_millis(u64::from(u32::MAX));
    let cap_s = Duration::from_secs(u64::from(u32::MAX - 1));
    ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(recovery.reset_after.min(cap_s)),
        reboot_msg: None,
        command: None,
        actions: Some(
            recovery
                .restart_after
                .iter()
                .map(|d| ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay: (*d).min(cap_ms),
                })
                .collect(),
        ),
    }
}

/// Registers the service, or updates the configuration of one already registered, with its
/// description and recovery actions (which also apply when it stops with an error code,
/// not only when it crashes).
///
/// Returns warnings for the caller to print: recovery actions the OS refused (Wine does
/// not implement them) leave a working service that is just not restarted on failure,
/// which is reported rather than undoing the install.
pub fn install(spec: &ServiceSpec) -> Result<Vec<String>, ServiceError> {
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(scm_err("connecting to the service control manager"))?;
    let info = service_info(spec);
    let access = ServiceAccess::QUERY_STATUS
        | ServiceAccess::CHANGE_CONFIG
        | ServiceAccess::START
        | ServiceAccess::STOP;
    let service = match manager.create_service(&info, access) {
        Ok(s) => s,
        Err(e) if os_code(&e) == Some(ERROR_SERVICE_EXISTS) => {
            let s = manager
                .open_service(&spec.name, access)
                .map_err(scm_err(format!("opening the service {}", spec.name)))?;
            s.change_config(&info)
                .map_err(scm_err(format!("updating the service {}", spec.name)))?;
            s
        }
        Err(e) => return Err(scm_err(format!("creating the service {}", spec.name))(e)),
    };
    service
        .set_description(&spec.description)
        .map_err(scm_err("setting the description"))?;
    let recovery = service
        .update_failure_actions(failure_actions(&spec.recovery))
        .and_then(|()| service.set_failure_actions_on_non_crash_failures(true));
    let mut warnings = Vec::new();
    if let Err(e) = recovery {
        warnings.push(format!(
            "the service {} is installed, but its recovery actions (restart on failure) \
             could not be set: {}",
            spec.name,
            describe(&e)
        ));
    }
    Ok(warnings)
}

/// Stops the service if it runs, then deletes it. `Ok(false)` when it was not installed.
pub fn uninstall(name: &str) -> Result<bool, ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(scm_err("connecting to the service control manager"))?;
    let service = match manager.open_service(
        name,
        ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
    ) {
        Ok(s) => s,
        Err(e) if os_code(&e) == Some(ERROR_SERVICE_DOES_NOT_EXIST) => return Ok(false),
        Err(e) => return Err(scm_err(format!("opening the service {name}"))(e)),
    };
    stop_and_wait(&service, name)?;
    service
        .delete()
        .map_err(scm_err(format!("deleting the service {name}")))?;
    Ok(true)
}

/// Starts the service.
pub fn start(name: &str) -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(scm_err("connecting to the service control manager"))?;
    let service = manager
        .open_service(name, ServiceAccess::START | ServiceAccess::QUERY_STATUS)
        .map_err(scm_err(format!("opening the service {name}")))?;
    service
        .start::<&str>(&[])
        .map_err(scm_err(format!("starting the service {name}")))
}

/// Stops the service and waits (up to 30 s) until it has stopped.
pub fn stop(name: &str) -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(scm_err("connecting to the service control manager"))?;
    let service = manager
        .open_service(name, ServiceAccess::STOP | ServiceAccess::QUERY_STATUS)
        .map_err(scm_err(format!("opening the service {name}")))?;
    stop_and_wait(&service, name)
}

fn stop_and_wait(
    service: &windows_service::service::Service,
    name: &str,
) -> Result<(), ServiceError> {
    let status = service
        .query_status()
        .map_err(scm_err(format!("querying the service {name}")))?;
    if status.current_state == ServiceState::Stopped {
        return Ok(());
    }
    match service.stop() {
        Ok(_) => {}
        Err(e) if os_code(&e) == Some(ERROR_SERVICE_NOT_ACTIVE) => return Ok(()),
        Err(e) => return Err(scm_err(format!("stopping the service {name}"))(e)),
    }
    let started = Instant::now();
    while started.elapsed() < STOP_WAIT {
        let s = service
            .query_status()
            .map_err(scm_err(format!("querying the service {name}")))?;
        if s.current_state == ServiceState::Stopped {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(ServiceError::Scm {
        what: format!("stopping the service {name}"),
        reason: format!("still running after {} s", STOP_WAIT.as_secs()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::path::PathBuf;

    use super::*;
    use crate::Account;

    #[test]
    fn the_scm_gets_the_spec() {
        let spec = ServiceSpec::new(
            "tether-agent",
            "Tether agent",
            "d",
            PathBuf::from(r"C:\Tether\tether-agent.exe"),
            &["--state-dir".to_owned(), r"C:\PD\Tether\agent".to_owned()],
            Account::Virtual,
        );
        let info = service_info(&spec);
        assert_eq!(
            info.account_name.as_deref(),
            Some(std::ffi::OsStr::new(r"NT SERVICE\tether-agent"))
        );
        assert!(info.account_password.is_none());
        assert_eq!(info.launch_arguments.len(), 4);
        assert_eq!(info.launch_arguments[0], "service");
        assert_eq!(info.start_type, ServiceStartType::AutoStart);
        let fa = failure_actions(&spec.recovery);
        let actions = fa.actions.unwrap();
        assert_eq!(actions.len(), 3);
        assert!(
            actions
                .iter()
                .all(|a| a.action_type == ServiceActionType::Restart)
        );
        assert_eq!(actions[2].delay, Duration::from_secs(60));
        assert_eq!(
            fa.reset_period,
            ServiceFailureResetPeriod::After(Duration::from_secs(86_400))
        );
    }
}
