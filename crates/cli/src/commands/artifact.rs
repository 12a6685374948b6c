//! `tether artifact get ID [-o FILE] [--force]`: download a command's artifact.
//!
//! **Written against a contract, ahead of the server route** (which has since landed;
//! `tests/commands.rs` downloads a real screenshot through it). This module relies only
//! on `GET /api/artifacts/{id}` answering [`ArtifactView`]: `{artifact_id, command_id,
//! device_id, content_type, size_bytes, sha256, download_url, expires_at, key?,
//! plaintext_sha256?}`, where `download_url` is a presigned `GET` URL (the server itself
//! for the local object store, or an S3 service), `sha256`/`size_bytes` describe the
//! stored bytes and, when `key` (unpadded base64url, 32 bytes) is present, the stored
//! bytes are `nonce (12) || AES-256-GCM ciphertext and tag` with the artifact id as
//! associated data. `plaintext_sha256`, when present, is the content's hash as the PC
//! reported it. It uses none of the server's code: only that shape.
//!
//! The order is what makes it safe: the download streams into a temporary file beside
//! the destination while it is hashed, and is cut off past the stated size; its SHA-256
//! must match the server's before anything is decrypted, and the content's must match
//! the PC's when the server passes that on; the plaintext goes to another temporary file
//! that is only then renamed over the destination (never replacing an existing file
//! without `--force`). A failed check leaves nothing behind.

use std::fmt::Display;
use std::io::{IsTerminal, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;
use tether_proto::ErrorCode;
use zeroize::Zeroizing;

use crate::context::{Conn, Ctx};
use crate::error::CliError;
use crate::output::clean;
use crate::output::live::bytes;
use crate::views::ArtifactView;

/// AES-GCM nonce length at the start of encrypted artifacts.
const NONCE_LEN: usize = 12;
/// AES-GCM tag length at the end.
const TAG_LEN: usize = 16;
/// Downloads at least this large show a byte counter (on a terminal).
const PROGRESS_FROM: u64 = 1024 * 1024;
/// How long a download may stall between chunks.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the content goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// A file.
    File(PathBuf),
    /// Standard output (`-o -`).
    Stdout,
}

#[derive(Serialize)]
struct Saved<'a> {
    artifact_id: &'a str,
    command_id: &'a str,
    device_id: &'a str,
    content_type: &'a str,
    path: String,
    bytes_written: u64,
    sha256: &'a str,
    decrypted: bool,
}

pub(super) async fn get(
    ctx: &Ctx,
    id: &str,
    output: Option<&Path>,
    force: bool,
) -> Result<(), CliError> {
    let id = super::devices::path_segment(id).map_err(|_| {
        CliError::usage(format!(
            "{id:?} is not an artifact id (see the command's result)"
        ))
    })?;
    let chosen = output.map(|p| {
        if p == Path::new("-") {
            Destination::Stdout
        } else {
            Destination::File(p.to_owned())
        }
    });
    if chosen == Some(Destination::Stdout) && ctx.out.is_json() {
        return Err(CliError::usage(
            "--json and -o - both want standard output; save to a file instead",
        ));
    }
    if let Some(Destination::File(p)) = &chosen {
        refuse_existing(p, force)?;
    }

    let conn = ctx.connect_logged_in().await?;
    let meta: ArtifactView = conn.get(&format!("/api/artifacts/{id}")).await?;
    check_meta(&meta, id)?;
    let dest = chosen.unwrap_or_else(|| Destination::File(PathBuf::from(default_file_name(&meta))));
    if let Destination::File(p) = &dest {
        refuse_existing(p, force)?;
    }

    let mut fetched = temp_beside(&dest)?;
    let show = !ctx.out.is_json() && std::io::stderr().is_terminal();
    let mut progress = Progress::new(meta.size_bytes, show);
    let digest = fetch(ctx, &conn, &meta, fetched.as_file_mut(), &mut progress).await?;
    progress.done();
    verify_sha256(&meta.sha256, &digest)?;

    let (written, decrypted) = match &meta.key {
        None => {
            if let Some(reported) = &meta.plaintext_sha256 {
                verify_content(reported, &digest)?;
            }
            let n = meta.size_bytes;
            deliver_file(fetched, &dest, force)?;
            (n, false)
        }
        Some(key) => {
            let mut sealed = Vec::new();
            let file = fetched.as_file_mut();
            file.rewind()
                .map_err(CliError::io("reading the download back"))?;
            file.read_to_end(&mut sealed)
                .map_err(CliError::io("reading the download back"))?;
            let plain = decrypt(key, &meta.artifact_id, &sealed)?;
            if let Some(reported) = &meta.plaintext_sha256 {
                verify_content(reported, &tether_proto::ids::sha256_hex(&plain))?;
            }
            drop(fetched);
            deliver_bytes(&plain, &dest, force)?;
            (u64::try_from(plain.len()).unwrap_or(u64::MAX), true)
        }
    };

    let path = match &dest {
        Destination::File(p) => p.display().to_string(),
        Destination::Stdout => "-".to_owned(),
    };
    let saved = Saved {
        artifact_id: &meta.artifact_id,
        command_id: &meta.command_id,
        device_id: &meta.device_id,
        content_type: &meta.content_type,
        path,
        bytes_written: written,
        sha256: &meta.sha256,
        decrypted,
    };
    if dest == Destination::Stdout {
        ctx.out.note(&saved_line(&saved));
    } else {
        ctx.out.emit(&saved, || saved_line(&saved));
    }
    Ok(())
}

fn saved_line(s: &Saved<'_>) -> String {
    #[allow(clippy::cast_precision_loss)] // display only
    let size = bytes(s.bytes_written as f64);
    format!(
        "Saved {} to {} ({size}, {}; sha256 verified{}).",
        clean(s.artifact_id),
        clean(&s.path),
        clean(s.content_type),
        if s.decrypted { ", decrypted" } else { "" },
    )
}

/// The server's answer must be about this artifact and carry a usable hash.
fn check_meta(meta: &ArtifactView, id: &str) -> Result<(), CliError> {
    if meta.artifact_id != id || !tether_proto::ids::is_sha256_hex(&meta.sha256) {
        return Err(CliError::Unreachable(format!(
            "unexpected answer from the server for artifact {id}: another id, or no SHA-256"
        )));
    }
    Ok(())
}

/// An existing file is replaced only with `--force`.
pub(crate) fn refuse_existing(path: &Path, force: bool) -> Result<(), CliError> {
    if !force && path.exists() {
        return Err(CliError::usage(format!(
            "{} exists; pass --force to replace it, or -o another file",
            path.display()
        )));
    }
    Ok(())
}

/// `<artifact id>.<extension of its content type>`; the id was checked to be a safe file
/// name (letters, digits, `_`, `-`).
pub(crate) fn default_file_name(meta: &ArtifactView) -> String {
    let mime = meta
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let ext = match mime.as_str() {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "application/zip" => "zip",
        "application/gzip" | "application/x-gzip" => "gz",
        "application/x-tar" => "tar",
        "application/json" => "json",
        "text/plain" => "txt",
        _ => "bin",
    };
    format!("{}.{ext}", meta.artifact_id)
}

/// A temporary file in the destination's directory (so the final rename stays on one
/// file system), or in the system's for standard output. Removed on drop.
fn temp_beside(dest: &Destination) -> Result<NamedTempFile, CliError> {
    let what = "creating a temporary file for the download";
    match dest {
        Destination::Stdout => NamedTempFile::new().map_err(CliError::io(what)),
        Destination::File(p) => {
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            tempfile::Builder::new()
                .prefix(".tether-download-")
                .tempfile_in(dir)
                .map_err(CliError::io(format!("{what} in {}", dir.display())))
        }
    }
}

/// Moves the verified download into place, or copies it to standard output.
fn deliver_file(mut tmp: NamedTempFile, dest: &Destination, force: bool) -> Result<(), CliError> {
    match dest {
        Destination::Stdout => {
            let file = tmp.as_file_mut();
            file.rewind()
                .map_err(CliError::io("reading the download back"))?;
            let mut out = std::io::stdout().lock();
            std::io::copy(file, &mut out).map_err(CliError::io("writing to standard output"))?;
            out.flush()
                .map_err(CliError::io("writing to standard output"))
        }
        Destination::File(p) => persist(tmp, p, force),
    }
}

/// Writes decrypted content into place (through a temporary file) or to standard output.
fn deliver_bytes(content: &[u8], dest: &Destination, force: bool) -> Result<(), CliError> {
    match dest {
        Destination::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(content)
                .and_then(|()| out.flush())
                .map_err(CliError::io("writing to standard output"))
        }
        Destination::File(p) => {
            let mut tmp = temp_beside(dest)?;
            tmp.write_all(content)
                .map_err(CliError::io(format!("writing {}", p.display())))?;
            persist(tmp, p, force)
        }
    }
}

/// Syncs and renames into place; without `force`, atomically refuses an existing file.
fn persist(tmp: NamedTempFile, path: &Path, force: bool) -> Result<(), CliError> {
    tmp.as_file()
        .sync_all()
        .map_err(CliError::io(format!("writing {}", path.display())))?;
    let kept = if force {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    match kept {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            refuse_existing(path, false)
        }
        Err(e) => Err(CliError::Io {
            what: format!("saving {}", path.display()),
            source: e.error,
        }),
    }
}

/// The downloaded bytes' SHA-256 must be the one the server recorded.
pub(crate) fn verify_sha256(expected: &str, actual: &str) -> Result<(), CliError> {
    if expected.eq_ignore_ascii_case(actual) {
        Ok(())
    } else {
        Err(CliError::Integrity {
            code: ErrorCode::ChecksumMismatch,
            message: format!(
                "the downloaded bytes have SHA-256 {actual}, the server recorded {}; nothing was saved",
                clean(expected)
            ),
        })
    }
}

/// The content's SHA-256 must be the one the PC reported (when the server passes it on).
pub(crate) fn verify_content(reported: &str, actual: &str) -> Result<(), CliError> {
    if reported.eq_ignore_ascii_case(actual) {
        Ok(())
    } else {
        Err(CliError::Integrity {
            code: ErrorCode::ChecksumMismatch,
            message: format!(
                "the content has SHA-256 {actual}, the PC reported {}; nothing was saved",
                clean(reported)
            ),
        })
    }
}

/// Opens `nonce || ciphertext` with the artifact's key, the artifact id as associated data.
pub(crate) fn decrypt(
    key_b64url: &str,
    artifact_id: &str,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let key = Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(key_b64url.trim().trim_end_matches('='))
            .map_err(|_| bad_key())?,
    );
    let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| bad_key())?;
    let broken = || {
        CliError::Integrity {
        code: ErrorCode::SealBroken,
        message: "the artifact does not decrypt with its key (wrong key, or altered bytes); nothing was saved".into(),
    }
    };
    let (nonce, ciphertext) = sealed
        .split_first_chunk::<NONCE_LEN>()
        .filter(|(_, c)| c.len() >= TAG_LEN)
        .ok_or_else(broken)?;
    cipher
        .decrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: ciphertext,
                aad: artifact_id.as_bytes(),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| broken())
}

fn bad_key() -> CliError {
    CliError::Unreachable(
        "unexpected answer from the server: the artifact key is not a base64url 256-bit key".into(),
    )
}

/// Streams `body` into `sink`, hashing as it goes; more than `size` bytes, or fewer at the
/// end, is a mismatch. Returns the lowercase hex SHA-256.
pub(crate) async fn copy_hashed<S, B, E>(
    mut body: S,
    size: u64,
    sink: &mut impl Write,
    progress: &mut Progress,
) -> Result<String, CliError>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: Display,
{
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| CliError::Unreachable(format!("the download broke off: {e}")))?;
        let chunk = chunk.as_ref();
        got = got.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
        if got > size {
            return Err(size_mismatch(size, "more"));
        }
        hasher.update(chunk);
        sink.write_all(chunk)
            .map_err(CliError::io("writing the download"))?;
        progress.advance(got);
    }
    if got != size {
        return Err(size_mismatch(size, "fewer"));
    }
    sink.flush().map_err(CliError::io("writing the download"))?;
    Ok(hex::encode(hasher.finalize()))
}

fn size_mismatch(size: u64, how: &str) -> CliError {
    CliError::Integrity {
        code: ErrorCode::ChecksumMismatch,
        message: format!(
            "the object store sent {how} bytes than the {size} the server recorded; nothing was saved"
        ),
    }
}

/// Downloads `meta.download_url` into `sink`; returns the SHA-256 of what arrived.
async fn fetch(
    ctx: &Ctx,
    conn: &Conn,
    meta: &ArtifactView,
    sink: &mut impl Write,
    progress: &mut Progress,
) -> Result<String, CliError> {
    let client = download_client(conn, &meta.download_url)?;
    let resp = client.get(&meta.download_url).send().await.map_err(|e| {
        CliError::Unreachable(format!("cannot reach the object store: {}", causes(&e)))
    })?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(download_refused(status, meta, ctx.clock.now().0));
    }
    copy_hashed(resp.bytes_stream(), meta.size_bytes, sink, progress).await
}

/// What a refused download means to the user.
pub(crate) fn download_refused(status: u16, meta: &ArtifactView, now_ms: u64) -> CliError {
    let again = "run `tether artifact get` again for a fresh download URL";
    match status {
        403 | 410 if meta.expires_at != 0 && now_ms > meta.expires_at => CliError::refused_locally(
            ErrorCode::UrlExpired,
            format!(
                "the download URL expired at {}",
                crate::output::utc(meta.expires_at)
            ),
            Some(again),
        ),
        403 | 410 => CliError::refused_locally(
            ErrorCode::Forbidden,
            format!("the object store refused the download URL (HTTP {status})"),
            Some(again),
        ),
        404 => CliError::refused_locally(
            ErrorCode::NotFound,
            "the object store has no bytes for this artifact",
            None,
        ),
        _ => CliError::Unreachable(format!("the object store answered HTTP {status}")),
    }
}

/// How a download URL is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The Tether server itself (the local object store): its pinned CA.
    Server,
    /// Another HTTPS host (S3): the public CAs.
    Public,
    /// Plain HTTP on this machine (a development object store).
    Loopback,
}

/// Where `url` points, relative to the server `server`; anything but HTTPS (or HTTP to
/// this machine) is refused: the URL is a capability to read the artifact.
pub(crate) fn origin_of(url: &str, server: &str) -> Result<Origin, CliError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| {
        CliError::Unreachable(
            "unexpected answer from the server: the download URL is not a URL".into(),
        )
    })?;
    let same = reqwest::Url::parse(server)
        .map(|s| s.origin() == parsed.origin())
        .unwrap_or(false);
    match parsed.scheme() {
        "https" if same => Ok(Origin::Server),
        "https" => Ok(Origin::Public),
        "http" if matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")) => {
            Ok(Origin::Loopback)
        }
        other => Err(CliError::Unreachable(format!(
            "the download URL uses {other}:// off this machine; only https is accepted"
        ))),
    }
}

fn download_client(conn: &Conn, url: &str) -> Result<reqwest::Client, CliError> {
    let provider = || Arc::new(rustls::crypto::ring::default_provider());
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    let builder = match origin_of(url, conn.server())? {
        Origin::Server => builder
            .tls_backend_preconfigured(tether_client::tls_config(&conn.trusted.ca_pem, None)?),
        // Plain HTTP to loopback (a test object store) still gets a TLS configuration:
        // reqwest builds no client without one (there is no process-wide provider).
        Origin::Public | Origin::Loopback => {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let tls = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| CliError::Unreachable(format!("TLS set-up: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder.tls_backend_preconfigured(tls)
        }
    };
    builder
        .build()
        .map_err(|e| CliError::Unreachable(format!("HTTP client: {}", causes(&e))))
}

/// An error with its causes (reqwest's own message leaves them out).
fn causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    msg
}

/// A byte counter on stderr for large downloads (redrawn at most ten times a second).
#[derive(Debug)]
pub(crate) struct Progress {
    total: u64,
    show: bool,
    last: Option<std::time::Instant>,
}

impl Progress {
    /// A counter for `total` bytes, drawn only when `show` and the download is large.
    pub(crate) fn new(total: u64, show: bool) -> Self {
        Self {
            total,
            show: show && total >= PROGRESS_FROM,
            last: None,
        }
    }

    fn advance(&mut self, got: u64) {
        if !self.show {
            return;
        }
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
            && got < self.total
        {
            return;
        }
        self.last = Some(now);
        #[allow(clippy::cast_precision_loss)] // display only
        let (g, t) = (got as f64, self.total as f64);
        let pct = if t > 0.0 { g / t * 100.0 } else { 100.0 };
        eprint!("\r  downloading {} / {} ({pct:.0}%)   ", bytes(g), bytes(t));
    }

    fn done(&self) {
        if self.show && self.last.is_some() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests;
