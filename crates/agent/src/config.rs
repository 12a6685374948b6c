//! The validated run configuration, built once from the command line and passed down.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::RunArgs;
use crate::commands::HelperLink;
use crate::error::AgentError;
use crate::queue::{self, QueueLimits};

/// A server base URL: `https://host[:port]`, without a trailing slash, path, query or
/// fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl(String);

impl ServerUrl {
    /// Checks the shape. Only https is accepted: the agent never talks to its server in the
    /// clear.
    pub fn parse(s: &str) -> Result<Self, AgentError> {
        let s = s.trim().trim_end_matches('/');
        let bad = |why: &str| AgentError::Config(format!("--server {s:?}: {why}"));
        let rest = s
            .strip_prefix("https://")
            .ok_or_else(|| bad("must start with https://"))?;
        if rest.is_empty() {
            return Err(bad("has no host"));
        }
        if rest
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '@'))
        {
            return Err(bad(
                "must be just https://host[:port], without a path, query or user name",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device name the server accepts: 1 to 64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceName(String);

impl DeviceName {
    /// The longest name the server accepts, in characters.
    pub const MAX_CHARS: usize = 64;

    /// Checks a name given by the user.
    pub fn parse(s: &str) -> Result<Self, AgentError> {
        let s = s.trim();
        let n = s.chars().count();
        if n == 0 || n > Self::MAX_CHARS || s.chars().any(char::is_control) {
            return Err(AgentError::Config(format!(
                "--device-name must be 1 to {} characters without control characters",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// Makes a usable name out of anything (a hostname read from the system): control
    /// characters dropped, cut to the maximum length, `pc` when nothing is left.
    pub fn sanitize(s: &str) -> Self {
        let clean: String = s
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
            .trim()
            .chars()
            .take(Self::MAX_CHARS)
            .collect();
        if clean.trim().is_empty() {
            Self("pc".to_owned())
        } else {
            Self(clean.trim().to_owned())
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How to come to trust the server's root CA when the state directory has none yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustSource {
    /// Only what the state directory already holds.
    StateOnly,
    /// A PEM file given by the user.
    CaFile(PathBuf),
    /// Download it and require this fingerprint (normalized: uppercase hex pairs with `:`).
    Fingerprint(String),
    /// Download it and accept whatever it is.
    DangerousTrustOnFirstUse,
}

/// Everything `tether-agent run` needs, checked.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The server, when given on the command line.
    pub server: Option<ServerUrl>,
    /// The state directory.
    pub state_dir: PathBuf,
    /// How to trust the server the first time.
    pub trust: TrustSource,
    /// The name to pair under, when given.
    pub device_name: Option<DeviceName>,
    /// The offline queue's bounds.
    pub queue: QueueLimits,
    /// The telemetry interval while offline, when overridden (tests, troubleshooting).
    pub offline_telemetry_interval: Option<Duration>,
    /// The helper's socket and key file, as given.
    pub helper_paths: Option<(PathBuf, PathBuf)>,
    /// How to reach the helper.
    pub helper: Option<HelperLink>,
}

/// The option that names the helper's endpoint: its Unix socket, or on Windows its named
/// pipe.
#[cfg(not(windows))]
pub const HELPER_ENDPOINT_FLAG: &str = "--helper-socket";
/// The option that names the helper's endpoint: its Unix socket, or on Windows its named
/// pipe.
#[cfg(windows)]
pub const HELPER_ENDPOINT_FLAG: &str = "--helper-pipe";

/// Reads a public key file: base64url of 32 bytes, surrounding whitespace ignored.
pub fn read_public_key_file(path: &std::path::Path) -> Result<[u8; 32], AgentError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        AgentError::Config(format!("cannot read the key file {}: {e}", path.display()))
    })?;
    tether_proto::validate::b64url_decode(text.trim())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            AgentError::Config(format!(
                "{} does not hold a base64url Ed25519 public key",
                path.display()
            ))
        })
}

impl RunConfig {
    /// Validates the arguments.
    pub fn from_args(args: RunArgs) -> Result<Self, AgentError> {
        let server = args.server.as_deref().map(ServerUrl::parse).transpose()?;
        let trust = if let Some(path) = args.trust.ca_file {
            TrustSource::CaFile(path)
        } else if let Some(fp) = args.trust.ca_fingerprint {
            TrustSource::Fingerprint(normalize_fingerprint(&fp)?)
        } else if args.trust.trust_on_first_use {
            TrustSource::DangerousTrustOnFirstUse
        } else {
            TrustSource::StateOnly
        };
        let device_name = args
            .device_name
            .as_deref()
            .map(DeviceName::parse)
            .transpose()?;
        if !(1..=10_000_000).contains(&args.queue_max) {
            return Err(AgentError::Config(
                "--queue-max must be 1 to 10000000 samples".into(),
            ));
        }
        if args.queue_max_bytes < queue::MIN_MAX_BYTES {
            return Err(AgentError::Config(format!(
                "--queue-max-bytes must be at least {}",
                queue::MIN_MAX_BYTES
            )));
        }
        let offline_telemetry_interval = match args.telemetry_interval_s {
            None => None,
            Some(n @ 1..=3600) => Some(Duration::from_secs(u64::from(n))),
            Some(_) => {
                return Err(AgentError::Config(
                    "--telemetry-interval-s must be 1 to 3600 seconds".into(),
                ));
            }
        };
        let helper_paths = match (args.helper_socket, args.helper_key_file) {
            (None, None) => None,
            (Some(s), Some(k)) => Some((s, k)),
            _ => {
                return Err(AgentError::Config(format!(
                    "{HELPER_ENDPOINT_FLAG} and --helper-key-file go together"
                )));
            }
        };
        let helper = helper_paths.as_ref().map(|(socket, key)| HelperLink {
            socket: socket.clone(),
            key_file: key.clone(),
        });
        Ok(Self {
            helper_paths,
            helper,
            server,
            state_dir: args.state_dir,
            trust,
            device_name,
            queue: QueueLimits {
                max_entries: args.queue_max,
                max_bytes: args.queue_max_bytes,
            },
            offline_telemetry_interval,
        })
    }

    /// The `run` arguments that reproduce this configuration (for a service unit).
    /// Paths are taken as given: make them absolute first.
    pub fn to_run_args(&self) -> Vec<String> {
        let mut a = vec!["run".to_owned(), "--state-dir".to_owned()];
        a.push(self.state_dir.display().to_string());
        if let Some(s) = &self.server {
            a.extend(["--server".to_owned(), s.as_str().to_owned()]);
        }
        match &self.trust {
            TrustSource::StateOnly => {}
            TrustSource::CaFile(p) => {
                a.extend(["--ca-file".to_owned(), p.display().to_string()]);
            }
            TrustSource::Fingerprint(fp) => a.extend(["--ca-fingerprint".to_owned(), fp.clone()]),
            TrustSource::DangerousTrustOnFirstUse => a.push("--trust-on-first-use".to_owned()),
        }
        if let Some(n) = &self.device_name {
            a.extend(["--device-name".to_owned(), n.as_str().to_owned()]);
        }
        let defaults = QueueLimits::default();
        if self.queue.max_entries != defaults.max_entries {
            a.extend(["--queue-max".to_owned(), self.queue.max_entries.to_string()]);
        }
        if self.queue.max_bytes != defaults.max_bytes {
            a.extend([
                "--queue-max-bytes".to_owned(),
                self.queue.max_bytes.to_string(),
            ]);
        }
        if let Some(i) = self.offline_telemetry_interval {
            a.extend(["--telemetry-interval-s".to_owned(), i.as_secs().to_string()]);
        }
        if let Some((socket, key)) = &self.helper_paths {
            a.extend([
                HELPER_ENDPOINT_FLAG.to_owned(),
                socket.display().to_string(),
                "--helper-key-file".to_owned(),
                key.display().to_string(),
            ]);
        }
        a
    }
}

/// Accepts a SHA-256 fingerprint with or without colons, in either case, and returns it
/// the way [`tether_client::fingerprint`] writes it.
pub fn normalize_fingerprint(s: &str) -> Result<String, AgentError> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect::<String>()
        .to_ascii_uppercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(AgentError::Config(
            "--ca-fingerprint must be a SHA-256 fingerprint: 32 hex pairs, e.g. 3A:1F:…".into(),
        ));
    }
    let pairs: Vec<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    Ok(pairs.join(":"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            ServerUrl::parse("https://localhost:8443/")
                .unwrap()
                .as_str(),
            "https://localhost:8443"
        );
        assert!(ServerUrl::parse("http://localhost:8443").is_err());
        assert!(ServerUrl::parse("https://").is_err());
        assert!(ServerUrl::parse("https://host/path").is_err());
        assert!(ServerUrl::parse("https://user@host").is_err());
    }

    #[test]
    fn fingerprints_are_normalized() {
        let plain = "ab".repeat(32);
        let want = vec!["AB"; 32].join(":");
        assert_eq!(normalize_fingerprint(&plain).unwrap(), want);
        assert_eq!(normalize_fingerprint(&want.to_lowercase()).unwrap(), want);
        assert!(normalize_fingerprint("AB:CD").is_err());
        assert!(normalize_fingerprint(&"zz".repeat(32)).is_err());
    }

    fn args(extra: &[&str]) -> RunArgs {
        use clap::Parser;
        let mut argv = vec!["tether-agent", "run", "--state-dir", "/var/lib/t"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Run(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn queue_and_interval_flags_are_checked() {
        let c = RunConfig::from_args(args(&[])).unwrap();
        assert_eq!(c.queue, QueueLimits::default());
        assert_eq!(c.offline_telemetry_interval, None);
        let c = RunConfig::from_args(args(&["--queue-max", "5", "--telemetry-interval-s", "2"]))
            .unwrap();
        assert_eq!(c.queue.max_entries, 5);
        assert_eq!(c.offline_telemetry_interval, Some(Duration::from_secs(2)));
        assert!(RunConfig::from_args(args(&["--queue-max", "0"])).is_err());
        assert!(RunConfig::from_args(args(&["--queue-max-bytes", "1000"])).is_err());
        assert!(RunConfig::from_args(args(&["--telemetry-interval-s", "0"])).is_err());
        assert!(RunConfig::from_args(args(&["--telemetry-interval-s", "3601"])).is_err());
    }

    #[test]
    fn run_args_round_trip() {
        let fp = vec!["AB"; 32].join(":");
        let c = RunConfig::from_args(args(&[
            "--server",
            "https://t.example:8443",
            "--ca-fingerprint",
            &fp,
            "--queue-max",
            "7",
        ]))
        .unwrap();
        let again = c.to_run_args();
        assert_eq!(
            again,
            [
                "run",
                "--state-dir",
                "/var/lib/t",
                "--server",
                "https://t.example:8443",
                "--ca-fingerprint",
                &fp,
                "--queue-max",
                "7"
            ]
        );
        let mut argv = vec!["tether-agent".to_owned()];
        argv.extend(again);
        assert!(matches!(
            <crate::cli::Cli as clap::Parser>::try_parse_from(argv)
                .unwrap()
                .command,
            crate::cli::Command::Run(_)
        ));
    }

    #[test]
    fn device_names() {
        assert!(DeviceName::parse("").is_err());
        assert!(DeviceName::parse(&"x".repeat(65)).is_err());
        assert_eq!(DeviceName::parse(" office ").unwrap().as_str(), "office");
        assert_eq!(DeviceName::sanitize("host\n").as_str(), "host");
        assert_eq!(DeviceName::sanitize("\n").as_str(), "pc");
        assert_eq!(DeviceName::sanitize(&"y".repeat(100)).as_str().len(), 64);
    }
}
