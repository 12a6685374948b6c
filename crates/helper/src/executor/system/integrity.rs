//! The tamper check (Unix): the attestation against the manifest plus owner and mode
//! checks of the binaries and the state directory.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::HelperError;
use crate::executor::manifest::{Manifest, attest, blocking, verdict};
use crate::state::files;

pub(super) async fn tamper_check(manifest: &Path, state_dir: &Path) -> Result<Value, HelperError> {
    let manifest = manifest.to_path_buf();
    let state_dir = state_dir.to_path_buf();
    blocking(move || {
        let m = Manifest::load(&manifest)?;
        let (hashes_ok, binaries) = attest(&m);
        let mut findings = Vec::new();
        // The helper's own user: the owner of the key it created.
        let me = std::fs::metadata(state_dir.join(files::HELPER_KEY))
            .map(|md| md.uid())
            .map_err(|e| HelperError::io(state_dir.join(files::HELPER_KEY), e))?;
        for (name, e) in &m.binaries {
            findings.push(not_writable_by_others(
                &format!("{name} binary"),
                &e.path,
                me,
            ));
            if let Some(dir) = e.path.parent() {
                findings.push(not_writable_by_others(
                    &format!("{name} directory"),
                    dir,
                    me,
                ));
            }
        }
        findings.push(not_writable_by_others(
            "helper state directory",
            &state_dir,
            me,
        ));
        findings.push(private_file(
            "helper key",
            &state_dir.join(files::HELPER_KEY),
        ));
        let perms_ok = findings.iter().all(|f| f["ok"] == true);
        Ok(json!({
            "verdict": verdict(hashes_ok && perms_ok),
            "binaries": binaries,
            "findings": findings,
        }))
    })
    .await
}

/// Owned by root or the helper's user, and not group- or world-writable.
fn not_writable_by_others(check: &str, path: &Path, me: u32) -> Value {
    let (ok, detail) = match std::fs::metadata(path) {
        Ok(md) => {
            let mode = md.mode() & 0o7777;
            if md.uid() != 0 && md.uid() != me {
                (
                    false,
                    format!("owned by uid {}, not root or the helper", md.uid()),
                )
            } else if mode & 0o022 != 0 {
                (false, format!("mode {mode:o} is group- or world-writable"))
            } else {
                (true, format!("uid {}, mode {mode:o}", md.uid()))
            }
        }
        Err(e) => (false, e.to_string()),
    };
    finding(check, path, ok, detail)
}

fn private_file(check: &str, path: &Path) -> Value {
    let (ok, detail) = match std::fs::metadata(path) {
        Ok(md) => {
            let mode = md.mode() & 0o7777;
            (mode & 0o077 == 0, format!("mode {mode:o}"))
        }
        Err(e) => (false, e.to_string()),
    };
    finding(check, path, ok, detail)
}

fn finding(check: &str, path: &Path, ok: bool, detail: String) -> Value {
    json!({ "check": check, "path": path.display().to_string(), "ok": ok, "detail": detail })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tamper_check_flags_a_world_writable_binary() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        crate::state::StateDir::open(&state).unwrap();
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir(&bin_dir).unwrap();
        std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = bin_dir.join("tether-helper");
        std::fs::write(&bin, b"hello").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let manifest = dir.path().join("manifest.json");
        std::fs::write(
            &manifest,
            json!({ "tether-helper": { "path": bin, "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" } }).to_string(),
        )
        .unwrap();
        let r = tamper_check(&manifest, &state).await.unwrap();
        assert_eq!(r["verdict"], "pass", "{r}");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o757)).unwrap();
        let r = tamper_check(&manifest, &state).await.unwrap();
        assert_eq!(r["verdict"], "fail", "{r}");
        assert_eq!(r["findings"][0]["ok"], false, "{r}");
    }
}
