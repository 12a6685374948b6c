//! Attestation against a manifest of the installed binaries (every platform):
//!
//! ```json
//! {"tether-agent": {"path": "/usr/bin/tether-agent", "sha256": "…"},
//!  "tether-helper": {"path": "/usr/bin/tether-helper", "sha256": "…"}}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};
use tether_proto::ids::is_sha256_hex;

use crate::error::HelperError;
use crate::executor::artifact::hash_file;

/// The largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// One binary in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Where it is installed.
    pub path: PathBuf,
    /// Its expected SHA-256, lowercase hex.
    pub sha256: String,
}

/// The installed binaries and their expected hashes, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Name (`tether-agent`, `tether-helper`) → entry.
    pub binaries: BTreeMap<String, ManifestEntry>,
}

impl Manifest {
    /// Reads and checks a manifest file. Blocking.
    pub fn load(path: &Path) -> Result<Self, HelperError> {
        let bad = |reason: String| HelperError::CorruptState {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| HelperError::io(path, e))?;
        if meta.len() > MAX_MANIFEST_BYTES {
            return Err(bad(format!("larger than {MAX_MANIFEST_BYTES} bytes")));
        }
        let text = std::fs::read(path).map_err(|e| HelperError::io(path, e))?;
        let binaries: BTreeMap<String, ManifestEntry> =
            serde_json::from_slice(&text).map_err(|e| bad(format!("not a manifest: {e}")))?;
        if binaries.is_empty() {
            return Err(bad("names no binaries".into()));
        }
        for (name, e) in &binaries {
            if !is_sha256_hex(&e.sha256) {
                return Err(bad(format!(
                    "{name}: sha256 is not 64 lowercase hex digits"
                )));
            }
            if !e.path.is_absolute() {
                return Err(bad(format!("{name}: path must be absolute")));
            }
        }
        Ok(Self { binaries })
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HelperError> + Send + 'static,
) -> Result<T, HelperError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HelperError::Kernel(e.to_string()))?
}

pub(crate) async fn attestation(manifest: &Path) -> Result<Value, HelperError> {
    let manifest = manifest.to_path_buf();
    blocking(move || {
        let m = Manifest::load(&manifest)?;
        let (ok, binaries) = attest(&m);
        Ok(json!({ "verdict": verdict(ok), "binaries": binaries }))
    })
    .await
}

pub(super) fn attest(m: &Manifest) -> (bool, Vec<Value>) {
    let mut all = true;
    let list = m
        .binaries
        .iter()
        .map(|(name, e)| {
            let (actual, error) = match hash_file(&e.path) {
                Ok((h, _)) => (Some(h), None),
                Err(err) => (None, Some(err.to_string())),
            };
            let matches = actual.as_deref() == Some(e.sha256.as_str());
            all &= matches;
            let mut v = json!({
                "name": name,
                "path": e.path.display().to_string(),
                "expected_sha256": e.sha256,
                "sha256": actual,
                "match": matches,
            });
            if let (Some(err), Some(o)) = (error, v.as_object_mut()) {
                o.insert("error".into(), Value::String(err));
            }
            v
        })
        .collect();
    (all, list)
}

pub(super) fn verdict(ok: bool) -> &'static str {
    if ok { "pass" } else { "fail" }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attestation_compares_hashes_with_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("tether-agent");
        std::fs::write(&bin, b"hello").unwrap();
        let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let manifest = dir.path().join("manifest.json");
        let write = |sha: &str| {
            std::fs::write(
                &manifest,
                json!({ "tether-agent": { "path": bin, "sha256": sha } }).to_string(),
            )
            .unwrap();
        };
        write(good);
        let r = attestation(&manifest).await.unwrap();
        assert_eq!(r["verdict"], "pass", "{r}");
        assert_eq!(r["binaries"][0]["match"], true);
        write(&"0".repeat(64));
        let r = attestation(&manifest).await.unwrap();
        assert_eq!(r["verdict"], "fail", "{r}");
        assert_eq!(r["binaries"][0]["sha256"], good);
        write("NOT-HEX");
        assert!(attestation(&manifest).await.is_err());
    }
}
