//! Envelope encryption of secrets at rest.
//!
//! Each blob gets a fresh random 256-bit data key (DEK). The plaintext is encrypted under
//! the DEK with AES-256-GCM; the DEK is encrypted ("wrapped") under the long-lived
//! key-encryption key ([`Kek`]) with AES-256-GCM as well. Both encryptions authenticate a
//! *purpose label* as associated data, so a blob sealed as one thing (say the root CA key)
//! cannot be presented as another (say a JWT signing key): opening it under any other label
//! fails.
//!
//! Format, version 1 (all lengths in bytes, no length fields: every part but the last has a
//! fixed size):
//!
//! ```text
//! "TSEAL" (5) | 0x01 (1) | wrap_nonce (12) | wrapped_dek (32 + 16 tag) | data_nonce (12) | ciphertext + tag (n + 16)
//! ```
//!
//! Associated data, with `label_len` the label's length as one byte (labels are 1..=255
//! printable ASCII bytes):
//!
//! ```text
//! wrap: "TSEAL" | 0x01 | 0x01 | label_len | label
//! data: "TSEAL" | 0x01 | 0x02 | label_len | label | wrap_nonce | wrapped_dek
//! ```
//!
//! Nonces are random. A DEK encrypts exactly one message, so its nonce can never repeat;
//! the KEK wraps one DEK per seal, far below the 2^32 random-nonce bound of AES-GCM.
//!
//! Any failure to open (wrong KEK, wrong label, a flipped bit, truncation, an unknown
//! version) is [`TrustError::SealBroken`] (2012). Key material (the KEK, each DEK and the
//! opened plaintext) lives in zeroize-on-drop buffers.

use std::fmt;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use zeroize::Zeroizing;

use crate::error::TrustError;
use crate::random;

/// The magic prefix of every sealed blob.
pub const MAGIC: &[u8; 5] = b"TSEAL";
/// The format version this build writes (and the only one it opens).
pub const VERSION: u8 = 1;
/// Length of a key-encryption key, and of every data key.
pub const KEY_LEN: usize = 32;
/// The longest purpose label.
pub const MAX_LABEL_LEN: usize = 255;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const WRAPPED_LEN: usize = KEY_LEN + TAG_LEN;
const ROLE_WRAP: u8 = 1;
const ROLE_DATA: u8 = 2;
/// Bytes a sealed blob has beyond its plaintext.
pub const OVERHEAD: usize = MAGIC.len() + 1 + NONCE_LEN + WRAPPED_LEN + NONCE_LEN + TAG_LEN;

/// A 256-bit key-encryption key. Zeroized on drop; its `Debug` does not show it.
#[derive(Clone)]
pub struct Kek(Zeroizing<[u8; KEY_LEN]>);

impl Kek {
    /// A fresh random key.
    pub fn generate() -> Result<Self, TrustError> {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        random::fill(k.as_mut())?;
        Ok(Self(k))
    }

    /// A key from exactly 32 bytes; any other length is [`TrustError::KekInvalid`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, TrustError> {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return Err(TrustError::KekInvalid(format!(
                "{} bytes, expected exactly {KEY_LEN}",
                bytes.len()
            )));
        }
        k.copy_from_slice(bytes);
        Ok(Self(k))
    }

    /// The raw key, for a keystore that persists it. Handle with care.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

/// Seals `plaintext` under `kek` for `label` (1..=255 printable ASCII bytes).
pub fn seal(kek: &Kek, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, TrustError> {
    check_label(label)?;
    let dek = Zeroizing::new(random::array::<KEY_LEN>()?);
    let wrap_nonce = random::array::<NONCE_LEN>()?;
    let data_nonce = random::array::<NONCE_LEN>()?;

    let wrapped = cipher(kek.expose_secret())?
        .encrypt(
            &Nonce::from(wrap_nonce),
            Payload {
                msg: dek.as_slice(),
                aad: &aad(ROLE_WRAP, label, &[], &[]),
            },
        )
        .map_err(|_| TrustError::crypto("AES-GCM refused to wrap a data key"))?;
    let ciphertext = cipher(dek.as_slice())?
        .encrypt(
            &Nonce::from(data_nonce),
            Payload {
                msg: plaintext,
                aad: &aad(ROLE_DATA, label, &wrap_nonce, &wrapped),
            },
        )
        .map_err(|_| TrustError::crypto("AES-GCM refused to encrypt"))?;

    let mut out = Vec::with_capacity(plaintext.len().saturating_add(OVERHEAD));
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&wrap_nonce);
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&data_nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens a blob made by [`seal`] with the same `kek` and `label`. Never panics, whatever
/// the bytes.
pub fn open(kek: &Kek, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, TrustError> {
    check_label(label)?;
    let rest = sealed
        .strip_prefix(MAGIC)
        .ok_or(TrustError::SealBroken("not a sealed blob"))?;
    let (&version, rest) = rest
        .split_first()
        .ok_or(TrustError::SealBroken("truncated"))?;
    if version != VERSION {
        return Err(TrustError::SealBroken("unknown seal format version"));
    }
    let (wrap_nonce, rest) = rest
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(TrustError::SealBroken("truncated"))?;
    let (wrapped, rest) = rest
        .split_first_chunk::<WRAPPED_LEN>()
        .ok_or(TrustError::SealBroken("truncated"))?;
    let (data_nonce, ciphertext) = rest
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(TrustError::SealBroken("truncated"))?;
    if ciphertext.len() < TAG_LEN {
        return Err(TrustError::SealBroken("truncated"));
    }

    let dek = Zeroizing::new(
        cipher(kek.expose_secret())?
            .decrypt(
                &Nonce::from(*wrap_nonce),
                Payload {
                    msg: wrapped,
                    aad: &aad(ROLE_WRAP, label, &[], &[]),
                },
            )
            .map_err(|_| TrustError::SealBroken("authentication failed"))?,
    );
    let plaintext = cipher(dek.as_slice())?
        .decrypt(
            &Nonce::from(*data_nonce),
            Payload {
                msg: ciphertext,
                aad: &aad(ROLE_DATA, label, wrap_nonce, wrapped),
            },
        )
        .map_err(|_| TrustError::SealBroken("authentication failed"))?;
    Ok(Zeroizing::new(plaintext))
}

fn cipher(key: &[u8]) -> Result<Aes256Gcm, TrustError> {
    // The key schedule is zeroized on drop (the `aes` crate's `zeroize` feature).
    Aes256Gcm::new_from_slice(key).map_err(|_| TrustError::SealBroken("data key of wrong length"))
}

fn check_label(label: &str) -> Result<(), TrustError> {
    if label.is_empty()
        || label.len() > MAX_LABEL_LEN
        || !label.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(TrustError::input(
            "seal label",
            "must be 1-255 printable ASCII bytes",
        ));
    }
    Ok(())
}

fn aad(role: u8, label: &str, wrap_nonce: &[u8], wrapped: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(
        MAGIC
            .len()
            .saturating_add(3)
            .saturating_add(label.len())
            .saturating_add(wrap_nonce.len())
            .saturating_add(wrapped.len()),
    );
    a.extend_from_slice(MAGIC);
    a.push(VERSION);
    a.push(role);
    // check_label bounds the length to 255, so it fits one byte.
    a.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
    a.extend_from_slice(label.as_bytes());
    a.extend_from_slice(wrap_nonce);
    a.extend_from_slice(wrapped);
    a
}

#[cfg(test)]
mod tests;
