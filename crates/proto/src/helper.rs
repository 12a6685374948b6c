//! The privileged helper's (the seed's KernelService) request and response, and its
//! enumerated opcodes. Requests travel over local IPC inside a signed envelope
//! (`helper_request`), signed by the agent's key; responses come back the same way
//! (`helper_response`), signed by the helper's key.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorCode, ProtoError};
use crate::ids::MessageId;
use crate::validate::{self, Validate};

macro_rules! opcodes {
    ($( $(#[$doc:meta])* $variant:ident = ($num:literal, $name:literal), )*) => {
        /// A helper operation. On the wire: its name (`EXEC_LOCK_SCREEN`); in logs also its number.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum Opcode {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )*
        }

        impl Opcode {
            /// Every opcode.
            pub const ALL: &'static [Opcode] = &[ $( Opcode::$variant, )* ];

            /// The stable number (IOCTL-style function code).
            pub const fn number(self) -> u16 {
                match self { $( Opcode::$variant => $num, )* }
            }

            /// The wire name.
            pub const fn name(self) -> &'static str {
                match self { $( Opcode::$variant => $name, )* }
            }
        }
    };
}

opcodes! {
    /// Lock the interactive session.
    ExecLockScreen = (0x0101, "EXEC_LOCK_SCREEN"),
    /// Log the interactive user off.
    ExecLogoff = (0x0102, "EXEC_LOGOFF"),
    /// Reboot.
    ExecReboot = (0x0103, "EXEC_REBOOT"),
    /// Shut down.
    ExecShutdown = (0x0104, "EXEC_SHUTDOWN"),
    /// Capture the active session's screen.
    CaptureScreenshot = (0x0201, "CAPTURE_SCREENSHOT"),
    /// Collect a log bundle.
    CollectLogs = (0x0202, "COLLECT_LOGS"),
    /// Hash the installed binaries.
    ExecRunAttestation = (0x0301, "EXEC_RUN_ATTESTATION"),
    /// Check the installation for tampering.
    ExecRunTamperCheck = (0x0302, "EXEC_RUN_TAMPER_CHECK"),
    /// Stage an update into a sandbox and smoke-test it.
    StageUpdate = (0x0401, "STAGE_UPDATE"),
    /// Atomically swap a staged update in.
    CommitUpdate = (0x0402, "COMMIT_UPDATE"),
    /// Restore the snapshot taken at commit.
    RollbackUpdate = (0x0403, "ROLLBACK_UPDATE"),
    /// Dump a process's memory.
    MemoryDump = (0x0501, "MEMORY_DUMP"),
    /// Tell the helper which policy bundle is in force on the agent: from then on it
    /// refuses every command request whose `policy_hash` is another (`4004`). Not a
    /// command: no method maps to it.
    SetPolicy = (0x0601, "SET_POLICY"),
}

/// Parameters of opcodes that take none: must be `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// `EXEC_REBOOT` / `EXEC_SHUTDOWN`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerParams {
    /// Seconds to wait (0..=3600) so the user can save work.
    #[serde(default)]
    pub delay_s: u32,
    /// Shown to the user and recorded with the OS's shutdown reason.
    #[serde(default)]
    pub reason: String,
    /// Close applications without asking.
    #[serde(default)]
    pub force: bool,
}

/// `CAPTURE_SCREENSHOT`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreenshotParams {
    /// Which display (0 = primary).
    #[serde(default)]
    pub display: u8,
}

/// `COLLECT_LOGS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectLogsParams {
    /// Only entries after this instant (Unix ms).
    #[serde(default)]
    pub since_ms: Option<u64>,
    /// Bundle size cap, bytes (1 KiB..=64 MiB).
    pub max_bytes: u64,
    /// Which sources (`system`, `application`, `security`, `tether`); empty = all.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// `STAGE_UPDATE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageUpdateParams {
    /// The release.
    pub release_id: String,
    /// Path of the downloaded package on the PC.
    pub package_path: String,
    /// Its SHA-256, checked again by the helper.
    pub package_sha256: String,
    /// SHA-256 of the verified manifest.
    pub manifest_sha256: String,
}

/// `COMMIT_UPDATE` / `ROLLBACK_UPDATE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxParams {
    /// The sandbox from `STAGE_UPDATE`.
    pub sandbox_id: String,
}

/// `MEMORY_DUMP`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryDumpParams {
    /// The process; `None` dumps the agent's own process (for diagnostics).
    #[serde(default)]
    pub pid: Option<u32>,
    /// Size cap, bytes (1 MiB..=4 GiB).
    pub max_bytes: u64,
}

/// `SET_POLICY`: the policy bundle in force on the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPolicyParams {
    /// Its version (0: the built-in policy); never lower than the one the helper holds.
    pub policy_version: u64,
    /// Its `policy_hash` (SHA-256 of the bundle's canonical form); MUST equal the
    /// request's own `policy_hash`.
    pub policy_hash: String,
}

/// An opcode's parameters, decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpParams {
    /// Lock, logoff, attestation, tamper check.
    None,
    /// Reboot, shutdown.
    Power(PowerParams),
    /// Screenshot.
    Screenshot(ScreenshotParams),
    /// Log bundle.
    CollectLogs(CollectLogsParams),
    /// Stage an update.
    StageUpdate(StageUpdateParams),
    /// Commit or roll back an update.
    Sandbox(SandboxParams),
    /// Memory dump.
    MemoryDump(MemoryDumpParams),
    /// The agent's policy in force.
    SetPolicy(SetPolicyParams),
}

fn params_as<T: DeserializeOwned>(v: &Value) -> Result<T, ProtoError> {
    if !v.is_object() {
        return Err(ProtoError::invalid("body.params", "must be a JSON object"));
    }
    T::deserialize(v).map_err(|e| ProtoError::invalid("body.params", e.to_string()))
}

impl Opcode {
    /// Decodes and checks `params` for this opcode.
    pub fn parse_params(self, params: &Value) -> Result<OpParams, ProtoError> {
        let p = match self {
            Opcode::ExecLockScreen
            | Opcode::ExecLogoff
            | Opcode::ExecRunAttestation
            | Opcode::ExecRunTamperCheck => {
                params_as::<NoParams>(params)?;
                OpParams::None
            }
            Opcode::ExecReboot | Opcode::ExecShutdown => {
                let p: PowerParams = params_as(params)?;
                validate::range("body.params.delay_s", p.delay_s, 0, 3600)?;
                validate::text("body.params.reason", &p.reason, 0, 256)?;
                OpParams::Power(p)
            }
            Opcode::CaptureScreenshot => {
                let p: ScreenshotParams = params_as(params)?;
                validate::range("body.params.display", p.display, 0, 15)?;
                OpParams::Screenshot(p)
            }
            Opcode::CollectLogs => {
                let p: CollectLogsParams = params_as(params)?;
                validate::range("body.params.max_bytes", p.max_bytes, 1 << 10, 64 << 20)?;
                validate::max_items("body.params.sources", &p.sources, 8)?;
                for s in &p.sources {
                    if !matches!(s.as_str(), "system" | "application" | "security" | "tether") {
                        return Err(ProtoError::invalid(
                            "body.params.sources[]",
                            format!("unknown source {s:?}"),
                        ));
                    }
                }
                OpParams::CollectLogs(p)
            }
            Opcode::StageUpdate => {
                let p: StageUpdateParams = params_as(params)?;
                validate::text("body.params.release_id", &p.release_id, 1, 64)?;
                validate::text("body.params.package_path", &p.package_path, 1, 1024)?;
                validate::sha256_hex("body.params.package_sha256", &p.package_sha256)?;
                validate::sha256_hex("body.params.manifest_sha256", &p.manifest_sha256)?;
                OpParams::StageUpdate(p)
            }
            Opcode::CommitUpdate | Opcode::RollbackUpdate => {
                let p: SandboxParams = params_as(params)?;
                validate::text("body.params.sandbox_id", &p.sandbox_id, 1, 64)?;
                OpParams::Sandbox(p)
            }
            Opcode::MemoryDump => {
                let p: MemoryDumpParams = params_as(params)?;
                validate::range("body.params.max_bytes", p.max_bytes, 1 << 20, 4 << 30)?;
                OpParams::MemoryDump(p)
            }
            Opcode::SetPolicy => {
                let p: SetPolicyParams = params_as(params)?;
                validate::sha256_hex("body.params.policy_hash", &p.policy_hash)?;
                OpParams::SetPolicy(p)
            }
        };
        Ok(p)
    }
}

/// agent → helper: the seed's `RequestSchema`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelperRequest {
    /// This request's id.
    pub request_id: MessageId,
    /// What to do.
    pub opcode: Opcode,
    /// The opcode's parameters (checked by [`Opcode::parse_params`]).
    pub params: Value,
    /// The agent's request counter (strictly increasing).
    pub agent_sequence: u64,
    /// SHA-256 of the policy bundle the agent checked the command against.
    pub policy_hash: String,
    /// The command this request carries out.
    pub command_message_id: MessageId,
    /// A fault to simulate (from the command's `simulate`); only a helper running the
    /// recording executor accepts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulate: Option<crate::messages::command::Simulation>,
}

impl Validate for HelperRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        validate::sha256_hex("body.policy_hash", &self.policy_hash)?;
        if let OpParams::SetPolicy(p) = self.opcode.parse_params(&self.params)?
            && p.policy_hash != self.policy_hash
        {
            return Err(ProtoError::invalid(
                "body.params.policy_hash",
                "must equal body.policy_hash",
            ));
        }
        Ok(())
    }
}

/// The helper's answer status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HelperStatus {
    /// Started; a final response follows.
    Executing,
    /// Done.
    Ok,
    /// Tried and failed.
    Failed,
    /// Refused (opcode, params, policy hash, caller, signature).
    Denied,
}

/// helper → agent: the seed's `ResponseSchema`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelperResponse {
    /// The request this answers.
    pub request_id: MessageId,
    /// Status.
    pub status: HelperStatus,
    /// The helper's id for this execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_exec_id: Option<String>,
    /// The error, for `failed` and `denied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorCode>,
    /// The result (a JSON object).
    pub result: Value,
}

impl Validate for HelperResponse {
    fn validate(&self) -> Result<(), ProtoError> {
        if !self.result.is_object() {
            return Err(ProtoError::invalid("body.result", "must be a JSON object"));
        }
        if let Some(k) = &self.kernel_exec_id {
            validate::text("body.kernel_exec_id", k, 1, 64)?;
        }
        match (self.status, self.error) {
            (HelperStatus::Failed | HelperStatus::Denied, None) => Err(ProtoError::invalid(
                "body.error",
                "required when failed or denied",
            )),
            (HelperStatus::Ok | HelperStatus::Executing, Some(_)) => Err(ProtoError::invalid(
                "body.error",
                "only allowed when failed or denied",
            )),
            _ => Ok(()),
        }
    }
}
