//! The local backend: one file per object under a directory, and URLs the server signs
//! itself and serves at `/api/objects/<key>`.

mod files;
mod signing;

use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::Digest;
use tokio::io::AsyncReadExt;

pub use signing::{SignedQuery, URL_KEY_LEN, UrlSigner};

use crate::{
    Method, ObjectKey, ObjectMeta, Objects, ObjectsError, ObjectsResult, PresignedUrl, UnixMillis,
};
use files::{TempFile, map_write_err, not_there};

/// Objects as files under a directory (`<root>/<key>`, the key's segments as
/// subdirectories), with URLs signed by a [`UrlSigner`].
///
/// Writes go to a `.tmp-…` file in the object's directory, are fsynced, renamed over the
/// object and the directory is fsynced: a reader or a crash sees the old object or the
/// new one. An upload that fails or is dropped half-way removes its temporary file.
/// Because keys are directories here, `a` and `a/b` cannot both exist
/// ([`ObjectsError::Conflict`]).
#[derive(Debug)]
pub struct LocalObjects {
    root: PathBuf,
    signer: UrlSigner,
}

impl LocalObjects {
    /// Opens (creating it if needed) the directory `root`, with URLs under
    /// `public_base_url` (the server's public URL) signed with `url_key` (at least
    /// [`URL_KEY_LEN`] random bytes, kept secret by the server).
    pub async fn open(root: &Path, public_base_url: &str, url_key: &[u8]) -> ObjectsResult<Self> {
        let signer = UrlSigner::new(public_base_url, url_key)?;
        tokio::fs::create_dir_all(root)
            .await
            .map_err(|e| ObjectsError::Backend(format!("creating {}: {e}", root.display())))?;
        Ok(Self {
            root: root.to_path_buf(),
            signer,
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The URL signer.
    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    /// For the server's `PUT`/`GET /api/objects/{*key}` routes: checks that `key` (the
    /// path after `/api/objects/`) is a valid key and that `query` is a live signature
    /// for `method` on it. Returns the key to use with [`put_stream`](Self::put_stream)
    /// or [`open_read`](Self::open_read).
    ///
    /// Errors: [`ObjectsError::InvalidKey`], [`ObjectsError::SignatureInvalid`] (altered,
    /// another key's or another method's URL), [`ObjectsError::UrlExpired`].
    pub fn verify_url(
        &self,
        method: Method,
        key: &str,
        query: &SignedQuery,
        now: UnixMillis,
    ) -> ObjectsResult<ObjectKey> {
        let key = ObjectKey::new(key)?;
        self.signer.verify(method, &key, query, now)?;
        Ok(key)
    }

    /// Stores an upload as it arrives: at most `max_bytes` (more is
    /// [`ObjectsError::TooLarge`] as soon as the limit is passed, and nothing is stored);
    /// a body that fails is [`ObjectsError::Upload`]. Returns the size and SHA-256 of
    /// what was stored.
    pub async fn put_stream<S, E>(
        &self,
        key: &ObjectKey,
        body: S,
        max_bytes: u64,
    ) -> ObjectsResult<ObjectMeta>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let path = self.path(key);
        let mut body = pin!(body);
        let mut tmp = TempFile::create(&path).await.map_err(map_write_err(key))?;
        let mut hasher = sha2::Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ObjectsError::Upload(e.to_string()))?;
            size = size.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
            if size > max_bytes {
                return Err(ObjectsError::TooLarge { limit: max_bytes });
            }
            hasher.update(&chunk);
            tmp.write_all(&chunk).await?;
        }
        tmp.commit(&path).await.map_err(map_write_err(key))?;
        Ok(ObjectMeta {
            size,
            sha256: Some(hex::encode(hasher.finalize())),
        })
    }

    /// Opens the object for streaming it out: the file and its size, or `None`.
    pub async fn open_read(
        &self,
        key: &ObjectKey,
    ) -> ObjectsResult<Option<(tokio::fs::File, u64)>> {
        let file = match tokio::fs::File::open(self.path(key)).await {
            Ok(f) => f,
            Err(e) if not_there(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let meta = file.metadata().await?;
        if !meta.is_file() {
            // `a` when only `a/b` exists: a directory, not an object.
            return Ok(None);
        }
        Ok(Some((file, meta.len())))
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(key.segments());
        p
    }
}

#[async_trait]
impl Objects for LocalObjects {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> ObjectsResult<ObjectMeta> {
        let path = self.path(key);
        let mut tmp = TempFile::create(&path).await.map_err(map_write_err(key))?;
        tmp.write_all(&data).await?;
        tmp.commit(&path).await.map_err(map_write_err(key))?;
        Ok(ObjectMeta {
            size: u64::try_from(data.len()).unwrap_or(u64::MAX),
            sha256: Some(crate::sha256_hex(&data)),
        })
    }

    async fn get(&self, key: &ObjectKey, max_bytes: u64) -> ObjectsResult<Option<Bytes>> {
        let Some((file, size)) = self.open_read(key).await? else {
            return Ok(None);
        };
        if size > max_bytes {
            return Err(ObjectsError::TooLarge { limit: max_bytes });
        }
        // The size was checked, but the file may be replaced meanwhile (a rename puts a
        // new inode in place; this handle keeps reading the old one, which cannot grow),
        // so the read is capped anyway.
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut buf)
            .await?;
        if u64::try_from(buf.len()).unwrap_or(u64::MAX) > max_bytes {
            return Err(ObjectsError::TooLarge { limit: max_bytes });
        }
        Ok(Some(Bytes::from(buf)))
    }

    async fn head(&self, key: &ObjectKey) -> ObjectsResult<Option<ObjectMeta>> {
        match tokio::fs::metadata(self.path(key)).await {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                size: m.len(),
                sha256: None,
            })),
            Ok(_) => Ok(None),
            Err(e) if not_there(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> ObjectsResult<()> {
        let path = self.path(key);
        match tokio::fs::symlink_metadata(&path).await {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if not_there(&e) => Ok(()),
                Err(e) => Err(e.into()),
            },
            Err(e) if not_there(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn presign_put(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        now: UnixMillis,
    ) -> ObjectsResult<PresignedUrl> {
        self.signer.sign(Method::Put, key, expires_in, now)
    }

    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        now: UnixMillis,
    ) -> ObjectsResult<PresignedUrl> {
        self.signer.sign(Method::Get, key, expires_in, now)
    }
}

#[cfg(test)]
mod tests;
