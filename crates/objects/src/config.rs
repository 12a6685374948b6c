//! The `[objects]` section of the server's configuration, and opening a backend from it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{LocalObjects, Objects, ObjectsError, ObjectsResult, S3Objects};

/// Where objects live (`objects.backend = "local" | "s3"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObjectsConfig {
    /// A directory (default: `<data_dir>/objects`); URLs point at the server itself.
    Local(LocalConfig),
    /// An S3 bucket; URLs point at S3.
    S3(S3Config),
}

impl Default for ObjectsConfig {
    fn default() -> Self {
        ObjectsConfig::Local(LocalConfig::default())
    }
}

impl ObjectsConfig {
    /// Checks what can be checked without I/O.
    pub fn validate(&self) -> ObjectsResult<()> {
        match self {
            ObjectsConfig::Local(_) => Ok(()),
            ObjectsConfig::S3(s3) => s3.validate(),
        }
    }
}

/// `objects.backend = "local"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// The directory; relative paths are under the data dir.
    #[serde(default = "default_local_path")]
    pub path: PathBuf,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            path: default_local_path(),
        }
    }
}

fn default_local_path() -> PathBuf {
    PathBuf::from("objects")
}

/// `objects.backend = "s3"`: AWS S3 or any S3-compatible service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket (it must exist).
    pub bucket: String,
    /// The region (default `us-east-1`; S3-compatible services often ignore it, but it
    /// is part of every SigV4 signature).
    #[serde(default = "default_region")]
    pub region: String,
    /// The service's URL, e.g. `https://s3.example.com:9000`. Absent: AWS
    /// (`https://s3.<region>.amazonaws.com`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Address the bucket as `<bucket>.<endpoint host>` (virtual-hosted style) instead of
    /// `<endpoint>/<bucket>` (path style, the default, which most S3-compatible services
    /// and AWS's existing buckets accept).
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// Allow an `http://` endpoint: objects and credentials-derived signatures then cross
    /// the network in clear. For a test server on loopback only.
    #[serde(default)]
    pub dangerous_allow_http: bool,
    /// Timeout of one request to S3 (retries included), seconds (1..=600, default 30).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_timeout_s() -> u64 {
    30
}

impl S3Config {
    /// Checks what can be checked without I/O.
    pub fn validate(&self) -> ObjectsResult<()> {
        let bad = |m: &str| Err(ObjectsError::Config(format!("objects: {m}")));
        if self.bucket.is_empty() || self.region.is_empty() {
            return bad("bucket and region must not be empty");
        }
        if self.access_key_id.is_empty() || self.secret_access_key.expose().is_empty() {
            return bad("access_key_id and secret_access_key must not be empty");
        }
        if !(1..=600).contains(&self.timeout_s) {
            return bad("timeout_s must be 1..=600");
        }
        if let Some(e) = &self.endpoint {
            let plain = e.starts_with("http://");
            if !(plain || e.starts_with("https://")) {
                return bad("endpoint must be an http(s):// URL");
            }
            if plain && !self.dangerous_allow_http {
                return bad("an http:// endpoint needs dangerous_allow_http = true");
            }
        }
        Ok(())
    }
}

/// A secret from the configuration: `<redacted>` in debug output and when serialized
/// (so `print-config` does not show it); it is only ever read from the file or the
/// environment.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

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

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An opened backend: as the trait object the application state holds, and, for the
/// local backend, as itself (the server mounts its `/api/objects/` routes only then).
#[derive(Debug, Clone)]
pub enum ObjectsBackend {
    /// A directory.
    Local(Arc<LocalObjects>),
    /// An S3 bucket.
    S3(Arc<S3Objects>),
}

impl ObjectsBackend {
    /// The backend as the trait object.
    pub fn objects(&self) -> Arc<dyn Objects> {
        match self {
            ObjectsBackend::Local(l) => l.clone(),
            ObjectsBackend::S3(s) => s.clone(),
        }
    }

    /// The local backend, if that is what this is.
    pub fn local(&self) -> Option<&Arc<LocalObjects>> {
        match self {
            ObjectsBackend::Local(l) => Some(l),
            ObjectsBackend::S3(_) => None,
        }
    }
}

/// Opens the configured backend. `data_dir` anchors a relative local path;
/// `public_base_url` (the server's public URL) and `url_key` (at least 32 secret random
/// bytes) sign the local backend's URLs and are not used by S3. Opening S3 makes no
/// request: a wrong bucket or key shows on first use.
pub async fn open(
    cfg: &ObjectsConfig,
    data_dir: &Path,
    public_base_url: &str,
    url_key: &[u8],
) -> ObjectsResult<ObjectsBackend> {
    cfg.validate()?;
    Ok(match cfg {
        ObjectsConfig::Local(l) => {
            let root = if l.path.is_absolute() {
                l.path.clone()
            } else {
                data_dir.join(&l.path)
            };
            ObjectsBackend::Local(Arc::new(
                LocalObjects::open(&root, public_base_url, url_key).await?,
            ))
        }
        ObjectsConfig::S3(s3) => ObjectsBackend::S3(Arc::new(S3Objects::connect(s3)?)),
    })
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Toml};

    use super::*;

    fn parse(toml: &str) -> Result<ObjectsConfig, String> {
        Figment::from(Toml::string(toml))
            .extract_inner("objects")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn local_with_and_without_path() {
        assert_eq!(
            parse("[objects]\nbackend = \"local\"").unwrap(),
            ObjectsConfig::default()
        );
        assert_eq!(
            parse("[objects]\nbackend = \"local\"\npath = \"/srv/objects\"").unwrap(),
            ObjectsConfig::Local(LocalConfig {
                path: "/srv/objects".into()
            })
        );
    }

    #[test]
    fn s3_full_and_defaults() {
        let cfg = parse(
            r#"[objects]
backend = "s3"
bucket = "tether-artifacts"
endpoint = "https://s3.example.com"
access_key_id = "AKID"
secret_access_key = "SECRET"
"#,
        )
        .unwrap();
        let ObjectsConfig::S3(s3) = &cfg else {
            panic!("{cfg:?}")
        };
        assert_eq!(s3.region, "us-east-1");
        assert!(!s3.virtual_hosted_style && !s3.dangerous_allow_http);
        assert_eq!(s3.timeout_s, 30);
        assert_eq!(s3.secret_access_key.expose(), "SECRET");
        cfg.validate().unwrap();
        // The secret never shows.
        assert!(!format!("{cfg:?}").contains("SECRET"));
        let shown = Figment::from(figment::providers::Serialized::defaults(&cfg))
            .extract_inner::<String>("secret_access_key")
            .unwrap();
        assert_eq!(shown, "<redacted>");
    }

    #[test]
    fn unknown_keys_and_backends_are_refused() {
        assert!(parse("[objects]\nbackend = \"local\"\nbucket = \"b\"").is_err());
        assert!(parse("[objects]\nbackend = \"gcs\"").is_err());
        assert!(
            parse(
                "[objects]\nbackend = \"s3\"\nbucket = \"b\"\naccess_key_id = \"a\"\n\
                 secret_access_key = \"s\"\nallow_http = true"
            )
            .is_err()
        );
    }

    #[test]
    fn plain_http_needs_the_dangerous_flag() {
        let toml = "[objects]\nbackend = \"s3\"\nbucket = \"b\"\naccess_key_id = \"a\"\n\
                    secret_access_key = \"s\"\nendpoint = \"http://127.0.0.1:9000\"\n";
        let e = parse(toml).unwrap().validate().unwrap_err();
        assert!(e.to_string().contains("dangerous_allow_http"), "{e}");
        parse(&format!("{toml}dangerous_allow_http = true"))
            .unwrap()
            .validate()
            .unwrap();
        let e = parse(&toml.replace("http://", "ftp://"))
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(matches!(e, ObjectsError::Config(_)));
    }
}
