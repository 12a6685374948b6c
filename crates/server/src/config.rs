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

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// A SQLite file (default: `<data_dir>/tether.db`).
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
    /// The store.
    #[serde(default = "default_store")]
    pub store: StoreConfig,
    /// The bus.
    #[serde(default = "default_bus")]
    pub bus: BusConfig,
    /// Accounts and tokens.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Discovery and pairing.
    #[serde(default)]
    pub pairing: PairingConfig,
    /// Write the chosen address to this file once listening (for scripts and tests).
    #[serde(default)]
    pub ready_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("tether-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_url: None,
            tls_names: Vec::new(),
            store: StoreConfig::Sqlite {
                path: default_sqlite_path(),
            },
            bus: BusConfig::Embedded {
                path: default_bus_path(),
            },
            auth: AuthConfig::default(),
            pairing: PairingConfig::default(),
            ready_file: None,
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
        Ok(())
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
