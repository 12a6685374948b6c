//! Server configuration: a TOML file with an environment overlay, parsed once into a
//! validated [`Config`] that is passed down. Nothing reads the environment later.
//!
//! Precedence (last wins): built-in defaults → the TOML file (`--config`) → environment
//! variables `TETHER_SERVER_<SECTION>__<KEY>` (e.g. `TETHER_SERVER_STORE__URL`,
//! `TETHER_SERVER_LISTEN`) →
//! command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// What a server process does. One process runs both by default (the quickstart and the
/// small-lab deployment); a large deployment runs processes of each kind against one
/// MySQL, one Redis and one S3 endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The users' side: accounts, devices, commands, the live view, alerts, artifacts.
    Api,
    /// The agents' side: holds their WebSocket sessions (`/agent/ws`).
    Gateway,
}

impl Role {
    /// The role's name in configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Gateway => "gateway",
        }
    }
}

fn default_roles() -> Vec<Role> {
    vec![Role::Api, Role::Gateway]
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// A SQLite file (default: `<data_dir>/tether.db`), and its telemetry events in a
    /// second one beside it (`tether-telemetry.db`).
    Sqlite {
        /// The file; relative paths are under the data dir.
        #[serde(default = "default_sqlite_path")]
        path: PathBuf,
    },
    /// MySQL or MariaDB.
    Mysql {
        /// `mysql://user:pass@host:3306/db`.
        url: String,
    },
}

fn default_sqlite_path() -> PathBuf {
    PathBuf::from("tether.db")
}

/// Where the bus lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum BusConfig {
    /// The embedded durable bus (default: `<data_dir>/bus.db`).
    Embedded {
        /// The file; relative paths are under the data dir.
        #[serde(default = "default_bus_path")]
        path: PathBuf,
    },
    /// Redis Streams.
    Redis {
        /// `redis://host:6379`.
        url: String,
        /// Prefix for every key, so deployments can share a Redis.
        #[serde(default = "default_namespace")]
        namespace: String,
    },
}

fn default_store() -> StoreConfig {
    StoreConfig::Sqlite {
        path: default_sqlite_path(),
    }
}

fn default_bus() -> BusConfig {
    BusConfig::Embedded {
        path: default_bus_path(),
    }
}

fn default_bus_path() -> PathBuf {
    PathBuf::from("bus.db")
}

fn default_namespace() -> String {
    "tether".into()
}

/// Account and token settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Access token lifetime, seconds.
    pub access_ttl_s: u64,
    /// Refresh token lifetime, seconds.
    pub refresh_ttl_s: u64,
    /// Signing key rotation period, seconds.
    pub rotation_s: u64,
    /// Login attempts per source per minute.
    pub login_per_minute: u64,
    /// Minimum password length.
    pub min_password_len: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_ttl_s: 900,
            refresh_ttl_s: 7 * 24 * 3600,
            rotation_s: 7 * 24 * 3600,
            login_per_minute: 20,
            min_password_len: 10,
        }
    }
}

/// Discovery and pairing settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PairingConfig {
    /// Discovery session lifetime, seconds (the seed: 10 minutes).
    pub discovery_ttl_s: u64,
    /// Pair token lifetime, seconds (the seed: 5 minutes).
    pub pair_token_ttl_s: u64,
    /// Discovery hellos per source per minute.
    pub discovery_per_minute: u64,
    /// Whether a newly paired device waits for an admin's approval. The stored admin
    /// setting, once set, overrides this default.
    pub require_approval: bool,
}

impl Default for PairingConfig {
    fn default() -> Self {
        Self {
            discovery_ttl_s: 600,
            pair_token_ttl_s: 300,
            discovery_per_minute: 10,
            require_approval: false,
        }
    }
}

/// The telemetry pipeline: rollups and retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Raw telemetry events collected longer ago than this many days are deleted; the
    /// hourly and daily rollups are kept.
    pub retention_days: u32,
    /// Seconds between runs of the RollupWorker (which also applies retention).
    pub rollup_every_s: u64,
    /// While the analytics workers have this many or more samples not yet read from the
    /// telemetry stream, the gateway refuses new samples (`9002 UNAVAILABLE`, naming each)
    /// instead of accepting samples the stream's cap (100,000 entries) could trim before
    /// they are stored. Checked once a second. 1..=90000.
    pub backlog_limit: u64,
    /// How much lower the CPU priority of the telemetry's bulk work (the analytics'
    /// thread and its store connections) is than the rest of the server's: a nice value
    /// added to the server's own (Linux, with the embedded bus; elsewhere ignored). On a
    /// saturated machine commands, logins and reconnecting agents then go first, and
    /// more of the telemetry is refused with `9002` and skipped by the agents (see
    /// `crate::priority`). 0..=19; 0 (the default): the same priority. It costs the
    /// stored rate much more than it gains commands at a telemetry ceiling, so it is
    /// left to deployments that would rather (docs/benchmarks.md).
    pub bulk_nice: u8,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            retention_days: 30,
            rollup_every_s: 300,
            backlog_limit: 50_000,
            bulk_nice: 0,
        }
    }
}

/// The agent gateway: the intervals it hands agents and how long presence lasts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Seconds between an agent's heartbeats (told to it on `connected`). A session with
    /// no frame for three intervals is closed.
    pub heartbeat_interval_s: u32,
    /// Seconds between an agent's telemetry samples (told to it on `connected`).
    pub telemetry_interval_s: u32,
    /// Seconds a device stays online after its last heartbeat or telemetry when its
    /// connection is not closed cleanly; at least two heartbeat intervals, so one lost
    /// heartbeat does not take a device offline.
    pub presence_ttl_s: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_s: 30,
            telemetry_interval_s: 10,
            presence_ttl_s: 60,
        }
    }
}

impl GatewayConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        // The ranges `connected` allows (docs/protocol.md).
        if !(5..=3600).contains(&self.heartbeat_interval_s)
            || !(1..=3600).contains(&self.telemetry_interval_s)
        {
            return Err(ConfigError(
                "gateway.heartbeat_interval_s must be 5..=3600 and telemetry_interval_s 1..=3600"
                    .into(),
            ));
        }
        let min_ttl = u64::from(self.heartbeat_interval_s).saturating_mul(2);
        if self.presence_ttl_s < min_ttl || self.presence_ttl_s > 86_400 {
            return Err(ConfigError(format!(
                "gateway.presence_ttl_s must be at least two heartbeat intervals ({min_ttl}) and \
                 at most 86400"
            )));
        }
        Ok(())
    }
}

/// Commands: the per-device queue bound and the delivery retry schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsConfig {
    /// A device may have at most this many commands waiting for delivery (`queued` or
    /// `sent`); a new one beyond that is refused with 5002 BACKPRESSURE.
    pub device_queue_max: u64,
    /// Seconds to wait for the agent's ack after delivery attempt 1, 2, 3…; after the
    /// last the command goes to the device's dead-letter queue. The length is the number
    /// of attempts.
    pub retry_backoff_s: Vec<u64>,
    /// Seconds between the CommandWorker's scans for overdue acks and expired commands.
    pub sweep_every_s: u64,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self {
            device_queue_max: 100,
            retry_backoff_s: vec![30, 120, 600],
            sweep_every_s: 1,
        }
    }
}

impl CommandsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100_000).contains(&self.device_queue_max) {
            return Err(ConfigError(
                "commands.device_queue_max must be 1..=100000".into(),
            ));
        }
        if self.retry_backoff_s.is_empty()
            || self.retry_backoff_s.len() > 16
            || self
                .retry_backoff_s
                .iter()
                .any(|s| !(1..=86_400).contains(s))
        {
            return Err(ConfigError(
                "commands.retry_backoff_s must list 1..=16 waits of 1..=86400 seconds".into(),
            ));
        }
        if !(1..=3600).contains(&self.sweep_every_s) {
            return Err(ConfigError(
                "commands.sweep_every_s must be 1..=3600".into(),
            ));
        }
        Ok(())
    }
}

/// A secret from the configuration: shown as `<redacted>` in debug output, logs and
/// `print-config` (it serializes redacted; it is only ever read from the file or the
/// environment).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Alert rules and the alert webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Where every raised or acknowledged alert is POSTed as signed JSON. `https://`, or
    /// `http://` to a loopback address (or anywhere with
    /// `dangerous_plain_http_webhook`).
    pub webhook_url: Option<String>,
    /// The HMAC-SHA256 key of the webhook's `X-Tether-Signature` (at least 16 bytes);
    /// required with `webhook_url`.
    pub webhook_secret: Option<Secret>,
    /// Allows an `http://` webhook to a non-loopback host: alerts then cross the network in
    /// clear (still signed).
    pub dangerous_plain_http_webhook: bool,
    /// CPU percentage that, held for `cpu_high_minutes`, raises a `cpu_high` warning.
    pub cpu_high_pct: u32,
    /// Minutes the CPU must stay at or above `cpu_high_pct`.
    pub cpu_high_minutes: u32,
    /// Disk use percentage (the fullest disk) that raises a `disk_full` warning.
    pub disk_high_pct: u32,
    /// Seconds without a sign of life (no presence, no telemetry) after which an active
    /// device gets an `offline` warning.
    pub offline_after_s: u64,
    /// Seconds between the OfflineWorker's scans.
    pub offline_check_s: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_secret: None,
            dangerous_plain_http_webhook: false,
            cpu_high_pct: 90,
            cpu_high_minutes: 5,
            disk_high_pct: 95,
            offline_after_s: 300,
            offline_check_s: 5,
        }
    }
}

impl AlertsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100).contains(&self.cpu_high_pct) || !(1..=100).contains(&self.disk_high_pct) {
            return Err(ConfigError(
                "alerts.cpu_high_pct and alerts.disk_high_pct must be 1..=100".into(),
            ));
        }
        if !(1..=1440).contains(&self.cpu_high_minutes) {
            return Err(ConfigError(
                "alerts.cpu_high_minutes must be 1..=1440".into(),
            ));
        }
        if !(1..=30 * 86_400).contains(&self.offline_after_s)
            || !(1..=3600).contains(&self.offline_check_s)
        {
            return Err(ConfigError(
                "alerts.offline_after_s must be 1..=2592000 and offline_check_s 1..=3600".into(),
            ));
        }
        match (&self.webhook_url, &self.webhook_secret) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(ConfigError(
                "alerts.webhook_secret is set but alerts.webhook_url is not".into(),
            )),
            (Some(_), None) => Err(ConfigError(
                "alerts.webhook_url needs alerts.webhook_secret (the HMAC key)".into(),
            )),
            (Some(url), Some(secret)) => {
                if secret.expose().len() < 16 {
                    return Err(ConfigError(
                        "alerts.webhook_secret must be at least 16 bytes".into(),
                    ));
                }
                check_webhook_url(url, self.dangerous_plain_http_webhook)
            }
        }
    }
}

/// An `https://` URL, or `http://` to loopback (or anywhere, if `allow_plain`).
fn check_webhook_url(url: &str, allow_plain: bool) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ConfigError(format!("alerts.webhook_url is not a URL: {e}")))?;
    // An IPv6 host comes back in brackets.
    let host = parsed.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_plain => Ok(()),
        "http" => Err(ConfigError(
            "alerts.webhook_url must be https:// (http:// only to a loopback address, or with \
             alerts.dangerous_plain_http_webhook)"
                .into(),
        )),
        other => Err(ConfigError(format!(
            "alerts.webhook_url: unsupported scheme {other}"
        ))),
    }
}

/// `GET /metrics` (Prometheus).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A bearer token a scraper may send instead of an admin's or auditor's access token
    /// (at least 32 characters). Unset: access tokens only.
    pub token: Option<Secret>,
}

impl MetricsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.token.as_ref().is_some_and(|t| t.expose().len() < 32) {
            return Err(ConfigError(
                "metrics.token must be at least 32 characters".into(),
            ));
        }
        Ok(())
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for the embedded database, bus, objects, keystore and CA.
    pub data_dir: PathBuf,
    /// Address for HTTPS and WSS. Port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// The URL phones and agents use to reach this server (goes into QR codes). Defaults
    /// to `https://localhost:<port>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Extra DNS names / IPs for the server certificate.
    #[serde(default)]
    pub tls_names: Vec<String>,
    /// What this process serves: `api`, `gateway`, or both (the default). Every process
    /// serves `/healthz`, `/metrics`, `/ca.pem` and the HTTP routes agents call (discovery,
    /// pairing, artifact uploads); only the gateway role holds agent sessions
    /// (`/agent/ws`), only the api role serves users. Both roles need the same data dir
    /// keys (copy `keys/` to every node) and shared backends (MySQL, Redis, S3).
    #[serde(default = "default_roles")]
    pub roles: Vec<Role>,
    /// The store.
    #[serde(default = "default_store")]
    pub store: StoreConfig,
    /// The bus.
    #[serde(default = "default_bus")]
    pub bus: BusConfig,
    /// The object store (artifacts).
    #[serde(default)]
    pub objects: tether_objects::ObjectsConfig,
    /// Accounts and tokens.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Discovery and pairing.
    #[serde(default)]
    pub pairing: PairingConfig,
    /// The agent gateway.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// Commands.
    #[serde(default)]
    pub commands: CommandsConfig,
    /// The telemetry pipeline.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Alert rules and the webhook.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// `GET /metrics`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Write the chosen address to this file once listening (for scripts and tests).
    #[serde(default)]
    pub ready_file: Option<PathBuf>,
    /// Serve the web app from this directory (a `vite build` output) instead of the copy
    /// embedded at compile time: for front-end development only.
    #[serde(default)]
    pub web_dir: Option<PathBuf>,
    /// Test mode: mounts the fault hooks (`POST /api/test/command?simulate=…`). Never in
    /// production.
    #[serde(default)]
    pub test_mode: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("tether-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_url: None,
            tls_names: Vec::new(),
            roles: default_roles(),
            store: StoreConfig::Sqlite {
                path: default_sqlite_path(),
            },
            bus: BusConfig::Embedded {
                path: default_bus_path(),
            },
            objects: tether_objects::ObjectsConfig::default(),
            auth: AuthConfig::default(),
            pairing: PairingConfig::default(),
            gateway: GatewayConfig::default(),
            commands: CommandsConfig::default(),
            telemetry: TelemetryConfig::default(),
            alerts: AlertsConfig::default(),
            metrics: MetricsConfig::default(),
            ready_file: None,
            web_dir: None,
            test_mode: false,
        }
    }
}

/// Command-line values that override the file and environment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--public-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// `--ready-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_file: Option<PathBuf>,
    /// `--role`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<Role>>,
}

impl Config {
    /// Loads defaults, then the file (if given), then `TETHER_SERVER_*` variables, then overrides.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        // The backend sections are left out of the merged defaults: a layer that picks
        // another backend must not inherit the default backend's keys (e.g. `path`).
        let mut defaults =
            serde_json::to_value(Config::default()).map_err(|e| ConfigError(e.to_string()))?;
        if let Some(m) = defaults.as_object_mut() {
            m.remove("store");
            m.remove("bus");
            m.remove("objects");
        }
        let mut fig = Figment::from(Serialized::defaults(defaults));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    f.display()
                )));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("TETHER_SERVER_").split("__"));
        fig = fig.merge(Serialized::defaults(overrides));
        let cfg: Config = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.roles.is_empty() {
            return Err(ConfigError(
                "roles must name at least one of api, gateway".into(),
            ));
        }
        let a = &self.auth;
        if !(60..=3600).contains(&a.access_ttl_s) {
            return Err(ConfigError("auth.access_ttl_s must be 60..=3600".into()));
        }
        if a.refresh_ttl_s < a.access_ttl_s {
            return Err(ConfigError(
                "auth.refresh_ttl_s must be at least access_ttl_s".into(),
            ));
        }
        if a.rotation_s < 3600 {
            return Err(ConfigError("auth.rotation_s must be at least 3600".into()));
        }
        if a.min_password_len < 8 {
            return Err(ConfigError(
                "auth.min_password_len must be at least 8".into(),
            ));
        }
        let p = &self.pairing;
        if !(30..=3600).contains(&p.pair_token_ttl_s) || !(60..=3600).contains(&p.discovery_ttl_s) {
            return Err(ConfigError(
                "pairing.pair_token_ttl_s must be 30..=3600 and discovery_ttl_s 60..=3600".into(),
            ));
        }
        if p.discovery_per_minute == 0 || a.login_per_minute == 0 {
            return Err(ConfigError(
                "rate limits must be at least 1 per minute".into(),
            ));
        }
        if let Some(u) = &self.public_url
            && !u.starts_with("https://")
        {
            return Err(ConfigError("public_url must start with https://".into()));
        }
        let t = &self.telemetry;
        if !(1..=3650).contains(&t.retention_days) || !(1..=86_400).contains(&t.rollup_every_s) {
            return Err(ConfigError(
                "telemetry.retention_days must be 1..=3650 and rollup_every_s 1..=86400".into(),
            ));
        }
        if !(1..=90_000).contains(&t.backlog_limit) {
            return Err(ConfigError(
                "telemetry.backlog_limit must be 1..=90000 (under the stream's cap of 100000)"
                    .into(),
            ));
        }
        if t.bulk_nice > 19 {
            return Err(ConfigError(
                "telemetry.bulk_nice must be 0..=19 (a nice value's range)".into(),
            ));
        }
        self.objects
            .validate()
            .map_err(|e| ConfigError(format!("objects: {e}")))?;
        self.gateway.validate()?;
        self.commands.validate()?;
        self.metrics.validate()?;
        self.alerts.validate()
    }

    /// Whether this process has `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The roles, as `api+gateway`.
    pub fn roles_label(&self) -> String {
        let mut names: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.join("+")
    }

    /// A path relative to the data dir (absolute paths stay as they are).
    pub fn in_data_dir(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.data_dir.join(p)
        }
    }
}

#[cfg(test)]
mod tests;
