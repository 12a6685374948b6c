//! The state directory: the agent's identity and everything it learned at pairing.
//!
//! ```text
//! <state-dir>/
//!   agent-key.pk8    Ed25519 private key, PKCS#8 DER (owner-only on Unix; sealed with
//!                    DPAPI, machine scope, on Windows)
//!   agent.pub        its public key, base64url (for `tether-helper --agent-key-file`)
//!   hwid             random hardware id, only where the OS offers none (Windows for now)
//!   ca.pem           the server's root CA this agent trusts
//!   server.json      {"server_url","ca_fingerprint"}
//!   seq              the agent→gateway sequence numbers reserved so far
//!   pairing.json     {"pair_url","pair_token","device_id","expires_at"} while pairing
//!   pair-qr.png      the pair URL as a QR code
//!   device.json      written last at pairing: device id, server, pinned gateway and owner keys
//!   device-cert.pem  the device certificate (same key as agent-key.pk8)
//!   ca-chain.pem     intermediate then root, as sent at activation
//!   session.json     {"session_id","connected_at",…} of the latest session, with the
//!                    intervals the server asked for
//!   queue.db         the offline queue (SQLite, encrypted rows; see `queue`), with its
//!                    -wal and -shm files
//!   queue.key        the offline queue's AES-256-GCM key (owner-only on Unix; DPAPI on
//!                    Windows), also the command ledger's
//!   commands.db      the command ledger (SQLite, encrypted bodies; see `commands::ledger`)
//! ```
//!
//! Every file is written atomically (a temporary file in the same directory, then a
//! rename), so a crash never leaves half a file; `device.json` is written after the
//! certificate files, so its presence means the pairing was saved completely.

use std::path::{Path, PathBuf};

use rand_core::{CryptoRng, RngCore};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tether_proto::messages::discovery::OwnerKey;

use crate::error::AgentError;
use crate::identity::AgentIdentity;
use crate::platform;

/// File names inside the state directory.
pub mod files {
    /// The agent key.
    pub const AGENT_KEY: &str = "agent-key.pk8";
    /// The agent's public key, for the helper.
    pub const AGENT_PUB: &str = "agent.pub";
    /// The fallback hardware id.
    pub const HWID: &str = "hwid";
    /// The trusted root CA.
    pub const CA: &str = "ca.pem";
    /// The server this state belongs to.
    pub const SERVER: &str = "server.json";
    /// Reserved sequence numbers.
    pub const SEQ: &str = "seq";
    /// The pending pairing.
    pub const PAIRING: &str = "pairing.json";
    /// The QR code of the pending pairing.
    pub const PAIR_QR: &str = "pair-qr.png";
    /// The paired device (written last).
    pub const DEVICE: &str = "device.json";
    /// The device certificate.
    pub const DEVICE_CERT: &str = "device-cert.pem";
    /// The CA chain from activation.
    pub const CA_CHAIN: &str = "ca-chain.pem";
    /// The latest session.
    pub const SESSION: &str = "session.json";
    /// The offline queue.
    pub const QUEUE_DB: &str = "queue.db";
    /// The offline queue's key.
    pub const QUEUE_KEY: &str = "queue.key";
}

/// Which server this state directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerRecord {
    /// The server's base URL.
    pub server_url: String,
    /// SHA-256 fingerprint of `ca.pem`.
    pub ca_fingerprint: String,
}

/// `pairing.json`: the pairing in progress (tests read it to confirm the pairing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairingTicket {
    /// The URL the QR code encodes.
    pub pair_url: String,
    /// The single-use token the owner confirms.
    pub pair_token: String,
    /// The device id the server assigned.
    pub device_id: String,
    /// When the token expires, ms since the Unix epoch.
    pub expires_at: u64,
}

/// A gateway envelope key, as `POST /api/pair/activate` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayKey {
    /// Key id, as in envelope headers.
    pub kid: String,
    /// Ed25519 public key, unpadded base64url.
    pub public_key: String,
}

/// `device.json`: what pairing established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRecord {
    /// The device id.
    pub device_id: String,
    /// The server paired with.
    pub server_url: String,
    /// When pairing completed, ms since the Unix epoch.
    pub paired_at: u64,
    /// The pairing code shown at pairing.
    pub pairing_code: String,
    /// The gateway keys pinned at pairing.
    pub gateway_keys: Vec<GatewayKey>,
    /// The owner keys pinned: at pairing, then as changed by owner-keys statements a
    /// pinned key signed.
    pub owner_keys: Vec<OwnerKey>,
    /// The `version` of the last owner-keys statement applied (0: none); a statement
    /// not above it is a replay.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub owner_keys_version: u64,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// `session.json`: the latest session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRecord {
    /// The gateway's session id.
    pub session_id: String,
    /// When `connected` arrived, ms since the Unix epoch.
    pub connected_at: u64,
    /// The heartbeat interval the server asked for, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_s: Option<u32>,
    /// The telemetry interval the server asked for, seconds: offline collection keeps
    /// to it across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_interval_s: Option<u32>,
}

/// A paired device: the record plus its certificate files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedDevice {
    /// `device.json`.
    pub record: DeviceRecord,
    /// The device certificate, PEM.
    pub cert_pem: String,
    /// Intermediate then root, PEM each.
    pub ca_chain_pem: Vec<String>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens the directory, creating it (owner-only where the platform allows).
    pub fn open(root: &Path) -> Result<Self, AgentError> {
        platform::create_private_dir(root).map_err(AgentError::io(root))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Opens an existing directory without creating anything.
    pub fn existing(root: &Path) -> Result<Self, AgentError> {
        if !root.is_dir() {
            return Err(AgentError::Config(format!(
                "{} is not a directory (no agent state there yet)",
                root.display()
            )));
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a file in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Writes a file atomically; `private` files are readable by the owner only.
    pub fn write_atomic(&self, name: &str, bytes: &[u8], private: bool) -> Result<(), AgentError> {
        let target = self.path(name);
        let tmp = self.path(&format!(".{name}.{}.tmp", std::process::id()));
        let written = if private {
            platform::write_private(&tmp, bytes)
        } else {
            write_synced(&tmp, bytes)
        };
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &target)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(AgentError::Io {
                path: target,
                source: e,
            });
        }
        Ok(())
    }

    /// Reads a file, `None` when it does not exist.
    pub fn read_optional(&self, name: &str) -> Result<Option<Vec<u8>>, AgentError> {
        let path = self.path(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AgentError::Io { path, source: e }),
        }
    }

    /// Writes a secret: [`platform::seal_secret`] (DPAPI on Windows) into a private file.
    pub fn write_secret(&self, name: &str, plain: &[u8]) -> Result<(), AgentError> {
        let sealed = platform::seal_secret(name, plain).map_err(|e| {
            AgentError::Crypto(format!("cannot protect {}: {e}", self.path(name).display()))
        })?;
        self.write_atomic(name, &sealed, true)
    }

    /// Reads a secret [`write_secret`](Self::write_secret) wrote, `None` when the file
    /// does not exist. A file that cannot be opened (sealed on another machine, damaged)
    /// is [`AgentError::CorruptState`].
    pub fn read_secret(
        &self,
        name: &str,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, AgentError> {
        self.read_optional(name)?
            .map(|sealed| {
                let sealed = zeroize::Zeroizing::new(sealed);
                platform::open_secret(name, &sealed)
                    .map_err(|e| self.corrupt(name, format!("cannot be unprotected: {e}")))
            })
            .transpose()
    }

    fn read_string(&self, name: &str) -> Result<Option<String>, AgentError> {
        self.read_optional(name)?
            .map(|b| String::from_utf8(b).map_err(|_| self.corrupt(name, "not UTF-8 text".into())))
            .transpose()
    }

    fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, AgentError> {
        self.read_optional(name)?
            .map(|b| serde_json::from_slice(&b).map_err(|e| self.corrupt(name, e.to_string())))
            .transpose()
    }

    fn write_json<T: Serialize>(&self, name: &str, v: &T, private: bool) -> Result<(), AgentError> {
        let mut bytes =
            serde_json::to_vec_pretty(v).map_err(|e| self.corrupt(name, e.to_string()))?;
        bytes.push(b'\n');
        self.write_atomic(name, &bytes, private)
    }

    /// Removes a file if it exists.
    pub fn remove(&self, name: &str) -> Result<(), AgentError> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AgentError::Io { path, source: e }),
        }
    }

    fn corrupt(&self, name: &str, reason: String) -> AgentError {
        AgentError::CorruptState {
            path: self.path(name),
            reason,
        }
    }

    /// Writes `agent.pub`, the agent's public key (base64url and a newline), for the
    /// helper to verify the agent's requests with (`tether-helper run --agent-key-file`).
    /// Unchanged files are left alone.
    pub fn write_agent_pub(&self, identity: &AgentIdentity) -> Result<(), AgentError> {
        let text = format!("{}\n", identity.agent_pub());
        if self.read_optional(files::AGENT_PUB)?.as_deref() == Some(text.as_bytes()) {
            return Ok(());
        }
        self.write_atomic(files::AGENT_PUB, text.as_bytes(), false)
    }

    /// The agent key, created (and stored owner-only) on first use.
    pub fn load_or_create_identity<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
    ) -> Result<(AgentIdentity, bool), AgentError> {
        if let Some(der) = self.read_secret(files::AGENT_KEY)? {
            let id = AgentIdentity::from_pkcs8_der(&der)
                .map_err(|e| self.corrupt(files::AGENT_KEY, e.to_string()))?;
            return Ok((id, false));
        }
        let id = AgentIdentity::generate(rng)?;
        self.write_secret(files::AGENT_KEY, id.pkcs8_der())?;
        Ok((id, true))
    }

    /// The agent key, if one was created.
    pub fn identity(&self) -> Result<Option<AgentIdentity>, AgentError> {
        self.read_secret(files::AGENT_KEY)?
            .map(|der| {
                AgentIdentity::from_pkcs8_der(&der)
                    .map_err(|e| self.corrupt(files::AGENT_KEY, e.to_string()))
            })
            .transpose()
    }

    /// The raw hardware id: the OS's machine id where there is one, else a random id
    /// created once and kept here.
    pub fn hwid<R: RngCore>(
        &self,
        os_machine_id: Option<String>,
        rng: &mut R,
    ) -> Result<String, AgentError> {
        if let Some(id) = os_machine_id {
            return Ok(id);
        }
        if let Some(s) = self.read_string(files::HWID)? {
            let s = s.trim().to_owned();
            if !s.is_empty() {
                return Ok(s);
            }
        }
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        let id = format!("tether-random-{}", hex_lower(&b));
        self.write_atomic(files::HWID, id.as_bytes(), true)?;
        Ok(id)
    }

    /// The trusted root CA, PEM.
    pub fn ca_pem(&self) -> Result<Option<String>, AgentError> {
        self.read_string(files::CA)
    }

    /// Saves the trusted root CA.
    pub fn save_ca_pem(&self, pem: &str) -> Result<(), AgentError> {
        self.write_atomic(files::CA, pem.as_bytes(), false)
    }

    /// The server this state belongs to.
    pub fn server(&self) -> Result<Option<ServerRecord>, AgentError> {
        self.read_json(files::SERVER)
    }

    /// Records the server.
    pub fn save_server(&self, r: &ServerRecord) -> Result<(), AgentError> {
        self.write_json(files::SERVER, r, false)
    }

    /// The pairing in progress.
    pub fn pairing_ticket(&self) -> Result<Option<PairingTicket>, AgentError> {
        self.read_json(files::PAIRING)
    }

    /// Records the pairing in progress (owner-only: it holds the pair token).
    pub fn save_pairing_ticket(&self, t: &PairingTicket) -> Result<(), AgentError> {
        self.write_json(files::PAIRING, t, true)
    }

    /// Forgets the pairing in progress.
    pub fn remove_pairing_ticket(&self) -> Result<(), AgentError> {
        self.remove(files::PAIRING)?;
        self.remove(files::PAIR_QR)
    }

    /// The paired device, if pairing completed.
    pub fn device(&self) -> Result<Option<PairedDevice>, AgentError> {
        let Some(record) = self.read_json::<DeviceRecord>(files::DEVICE)? else {
            return Ok(None);
        };
        let missing = |name: &str| {
            self.corrupt(
                name,
                "missing although device.json exists; pair again with a fresh state dir".into(),
            )
        };
        let cert_pem = self
            .read_string(files::DEVICE_CERT)?
            .ok_or_else(|| missing(files::DEVICE_CERT))?;
        let chain = self
            .read_string(files::CA_CHAIN)?
            .ok_or_else(|| missing(files::CA_CHAIN))?;
        Ok(Some(PairedDevice {
            record,
            cert_pem,
            ca_chain_pem: split_pem_certificates(&chain),
        }))
    }

    /// Saves a completed pairing: certificate files first, `device.json` last.
    pub fn save_device(&self, d: &PairedDevice) -> Result<(), AgentError> {
        self.write_atomic(files::DEVICE_CERT, d.cert_pem.as_bytes(), false)?;
        let chain: String = d
            .ca_chain_pem
            .iter()
            .map(|p| format!("{}\n", p.trim_end()))
            .collect();
        self.write_atomic(files::CA_CHAIN, chain.as_bytes(), false)?;
        self.write_json(files::DEVICE, &d.record, false)
    }

    /// Replaces the pinned owner keys and the last applied statement version in
    /// `device.json` (atomically; the certificate files are unchanged).
    pub fn save_owner_keys(&self, keys: &[OwnerKey], version: u64) -> Result<(), AgentError> {
        let mut record = self
            .read_json::<DeviceRecord>(files::DEVICE)?
            .ok_or_else(|| self.corrupt(files::DEVICE, "missing: the PC is not paired".into()))?;
        record.owner_keys = keys.to_vec();
        record.owner_keys_version = version;
        self.write_json(files::DEVICE, &record, false)
    }

    /// Records the latest session.
    pub fn save_session(&self, s: &SessionRecord) -> Result<(), AgentError> {
        self.write_json(files::SESSION, s, false)
    }

    /// The latest session.
    pub fn session(&self) -> Result<Option<SessionRecord>, AgentError> {
        self.read_json(files::SESSION)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Splits concatenated PEM certificates into one string each.
pub fn split_pem_certificates(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(tail) = rest.get(start..) else { break };
        let Some(end) = tail.find(END) else { break };
        let stop = end.saturating_add(END.len());
        if let Some(block) = tail.get(..stop) {
            out.push(format!("{block}\n"));
        }
        rest = tail.get(stop..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests;
