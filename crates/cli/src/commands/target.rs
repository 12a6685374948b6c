//! Which device a command line means: `<device>` is a device id or a device name. The
//! names come from the PCs themselves, so two of them may share one; a name then has to
//! give way to the id.

use tether_proto::ErrorCode;

use crate::context::Conn;
use crate::error::CliError;
use crate::output::command::device_label;
use crate::views::DeviceView;

/// A device the command line named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Its id.
    pub id: String,
    /// Its name, when it is one of the listed devices.
    pub name: Option<String>,
}

impl Target {
    /// `name (id)` for messages, or the id.
    pub(crate) fn label(&self) -> String {
        device_label(&self.id, self.name.as_deref())
    }
}

/// Device ids start with this; an id-shaped argument that is not among the listed
/// devices is still sent, and the server has the last word on it.
const ID_PREFIX: &str = "dev_";

/// Finds `arg` among `devices` (what `GET /api/devices` listed): by id, else by exact
/// name, else by name in any case. Two devices with the name is an error naming both; no
/// match is `NOT_FOUND`, unless `arg` looks like a device id (then the server decides).
pub(crate) fn resolve(arg: &str, devices: &[DeviceView]) -> Result<Target, CliError> {
    let arg = arg.trim();
    if arg.is_empty() {
        return Err(CliError::usage("the device is empty: give its id or name"));
    }
    let found = |d: &DeviceView| Target {
        id: d.id.clone(),
        name: Some(d.name.clone()),
    };
    if let Some(d) = devices.iter().find(|d| d.id == arg) {
        return Ok(found(d));
    }
    let exact: Vec<&DeviceView> = devices.iter().filter(|d| d.name == arg).collect();
    let named = if exact.is_empty() {
        devices
            .iter()
            .filter(|d| d.name.to_lowercase() == arg.to_lowercase())
            .collect()
    } else {
        exact
    };
    match named.as_slice() {
        [d] => Ok(found(d)),
        [] if arg.starts_with(ID_PREFIX) => Ok(Target {
            id: super::devices::path_segment(arg)?.to_owned(),
            name: None,
        }),
        [] => Err(CliError::refused_locally(
            ErrorCode::NotFound,
            format!("no device of yours has the id or name {arg:?}"),
            Some("`tether devices` lists your devices"),
        )),
        several => {
            let ids: Vec<String> = several
                .iter()
                .map(|d| device_label(&d.id, Some(&d.name)))
                .collect();
            Err(CliError::usage(format!(
                "{} devices are called {arg:?}: {}; name one by its id",
                several.len(),
                ids.join(", ")
            )))
        }
    }
}

/// Lists the caller's devices and resolves `arg` among them.
pub(crate) async fn resolve_on_server(conn: &Conn, arg: &str) -> Result<Target, CliError> {
    let devices: Vec<DeviceView> = conn.get("/api/devices").await?;
    resolve(arg, &devices)
}

#[cfg(test)]
mod tests;
