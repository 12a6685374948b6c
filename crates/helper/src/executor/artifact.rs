//! Artifacts: files an execution produces for the agent to upload (screenshots, log
//! bundles). Each is `<state-dir>/artifacts/<kernel_exec_id>.<ext>`, owner-only and owned
//! by the agent's user (the helper runs as root, the agent does not), and is described in
//! the result as `{"artifact_path","content_type","sha256","size_bytes"}` with the SHA-256
//! of the plaintext file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::HelperError;
use crate::platform;

/// Where artifacts go and who gets them.
#[derive(Debug, Clone)]
pub struct Artifacts {
    dir: PathBuf,
    owner: Option<(u32, u32)>,
}

impl Artifacts {
    /// Artifacts in `dir`, handed to `owner` (uid, gid) when given.
    pub fn new(dir: PathBuf, owner: Option<(u32, u32)>) -> Self {
        Self { dir, owner }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of an execution's artifact. `kernel_exec_id` is the helper's own `kx_<n>`.
    pub(crate) fn path_for(&self, kernel_exec_id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{kernel_exec_id}.{ext}"))
    }

    /// Creates the directory (0700, the agent's). Blocking.
    pub(crate) fn prepare(&self) -> Result<(), HelperError> {
        platform::create_dir(&self.dir, 0o700).map_err(|e| HelperError::io(&self.dir, e))?;
        platform::hand_to(&self.dir, self.owner).map_err(|e| HelperError::io(&self.dir, e))
    }

    /// Writes an artifact and describes it. Blocking.
    pub(crate) fn write(
        &self,
        path: &Path,
        bytes: &[u8],
        content_type: &str,
    ) -> Result<Value, HelperError> {
        self.prepare()?;
        {
            let mut f = platform::create_with_mode(path, 0o600, true)
                .map_err(|e| HelperError::io(path, e))?;
            f.write_all(bytes)
                .and_then(|()| f.sync_all())
                .map_err(|e| HelperError::io(path, e))?;
        }
        self.publish(path, content_type)
    }

    /// Makes a file some tool wrote the agent's and describes it. Blocking.
    pub(crate) fn publish(&self, path: &Path, content_type: &str) -> Result<Value, HelperError> {
        platform::set_mode(path, 0o600).map_err(|e| HelperError::io(path, e))?;
        platform::hand_to(path, self.owner).map_err(|e| HelperError::io(path, e))?;
        let (sha256, size) = hash_file(path)?;
        Ok(json!({
            "artifact_path": path.display().to_string(),
            "content_type": content_type,
            "sha256": sha256,
            "size_bytes": size,
        }))
    }
}

/// SHA-256 (lowercase hex) and size of a file. Blocking.
pub(crate) fn hash_file(path: &Path) -> Result<(String, u64), HelperError> {
    let mut f = std::fs::File::open(path).map_err(|e| HelperError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| HelperError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
        size = size.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
    Ok((hex::encode(h.finalize()), size))
}

/// A small RGB gradient as a PNG: what the recording executor "captures". `seed` tints it,
/// so two captures differ.
pub(crate) fn gradient_png(width: u32, height: u32, seed: u8) -> Result<Vec<u8>, HelperError> {
    let scale = |i: u32, n: u32| -> u8 {
        let v = i
            .saturating_mul(255)
            .checked_div(n.saturating_sub(1).max(1))
            .unwrap_or(0);
        u8::try_from(v).unwrap_or(u8::MAX)
    };
    let mut pixels = Vec::new();
    for y in 0..height {
        for x in 0..width {
            pixels.extend_from_slice(&[scale(x, width), scale(y, height), seed]);
        }
    }
    let err = |e: png::EncodingError| HelperError::Kernel(format!("cannot encode the PNG: {e}"));
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(err)?;
        w.write_image_data(&pixels).map_err(err)?;
        w.finish().map_err(err)?;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn the_gradient_is_a_png_that_decodes_to_its_pixels() {
        let bytes = gradient_png(16, 8, 42).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (16, 8));
        assert_eq!(&buf[..3], &[0, 0, 42]);
        let last = buf.len() - 3;
        assert_eq!(&buf[last..], &[255, 255, 42]);
    }

    #[test]
    fn written_artifacts_are_described_by_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let a = Artifacts::new(dir.path().join("artifacts"), None);
        let p = a.path_for("kx_3", "log");
        let d = a.write(&p, b"hello", "text/plain").unwrap();
        assert_eq!(
            d["sha256"],
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(d["size_bytes"], 5);
        assert!(d["artifact_path"].as_str().unwrap().ends_with("kx_3.log"));
    }
}
