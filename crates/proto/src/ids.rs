//! Identifier types whose shape is checked when they are decoded, so a value of one of
//! these types is always well-formed.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:path, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and checks the shape.
            pub fn parse(s: &str) -> Result<Self, String> {
                if $check(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(format!("not a valid {}", $what))
                }
            }

            /// The string form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

checked_string!(
    /// A message id: a UUID in its 36-character lowercase hyphenated form. It is the
    /// idempotency key of a message: a receiver that already accepted it ignores a repeat.
    MessageId, is_uuid, "message id (lowercase hyphenated UUID)"
);
checked_string!(
    /// A W3C trace-context trace id: 32 lowercase hex digits, not all zero.
    TraceId, is_trace_id, "trace id (32 lowercase hex digits, not all zero)"
);
checked_string!(
    /// A key id: 1 to 64 characters from `A-Z a-z 0-9 . _ : -`.
    KeyId, is_kid, "key id (1-64 characters of A-Z a-z 0-9 . _ : -)"
);

impl MessageId {
    /// A version-4 UUID from 16 random bytes (the caller supplies the randomness).
    pub fn from_random_bytes(mut b: [u8; 16]) -> Self {
        if let Some(x) = b.get_mut(6) {
            *x = (*x & 0x0f) | 0x40;
        }
        Self::with_variant(b)
    }

    /// A version-7 UUID (RFC 9562): the 48-bit Unix time in milliseconds `at`, then
    /// random bits from `random` (the caller supplies the randomness). Ids made later
    /// sort later, so an index of them (the server's store of telemetry, by message id)
    /// grows at its end instead of being written all over.
    pub fn time_ordered(at: crate::UnixMillis, mut random: [u8; 16]) -> Self {
        let ms = at.0.to_be_bytes();
        for (dst, src) in random.iter_mut().zip(ms.iter().skip(2)) {
            *dst = *src;
        }
        if let Some(x) = random.get_mut(6) {
            *x = (*x & 0x0f) | 0x70;
        }
        Self::with_variant(random)
    }

    /// The hyphenated form of `b` with the RFC 9562 variant bits set.
    fn with_variant(mut b: [u8; 16]) -> Self {
        if let Some(x) = b.get_mut(8) {
            *x = (*x & 0x3f) | 0x80;
        }
        let h = hex::encode(b);
        let s = format!(
            "{}-{}-{}-{}-{}",
            h.get(0..8).unwrap_or_default(),
            h.get(8..12).unwrap_or_default(),
            h.get(12..16).unwrap_or_default(),
            h.get(16..20).unwrap_or_default(),
            h.get(20..32).unwrap_or_default()
        );
        Self(s)
    }
}

impl TraceId {
    /// A trace id from 16 random bytes (the caller supplies the randomness). All-zero
    /// input, which W3C forbids, becomes `...01`.
    pub fn from_random_bytes(mut b: [u8; 16]) -> Self {
        if b.iter().all(|x| *x == 0) {
            b[15] = 1;
        }
        Self(hex::encode(b))
    }
}

impl KeyId {
    /// The key id Tether gives an Ed25519 public key: the first 8 bytes of the SHA-256 of
    /// its 32 raw bytes, as 16 lowercase hex digits.
    pub fn for_ed25519(public_key: &[u8; 32]) -> Self {
        let digest = Sha256::digest(public_key);
        Self(hex::encode(digest.get(..8).unwrap_or_default()))
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

fn is_trace_id(s: &str) -> bool {
    s.len() == 32 && is_lower_hex(s) && s.bytes().any(|b| b != b'0')
}

fn is_kid(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Whether `s` is a lowercase hex SHA-256 digest (64 digits).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

/// The lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UnixMillis;

    #[test]
    fn a_time_ordered_id_is_a_version_7_uuid_that_sorts_by_time() {
        let at = UnixMillis(1_764_115_200_000);
        let id = MessageId::time_ordered(at, [0xff; 16]);
        assert!(MessageId::parse(id.as_str()).is_ok(), "{id}");
        // 1_764_115_200_000 ms = 0x019a_bd75_b800; version 7; variant 10.
        assert_eq!(id.as_str(), "019abd75-b800-7fff-bfff-ffffffffffff");
        let later = MessageId::time_ordered(UnixMillis(at.0 + 1), [0; 16]);
        assert!(later > id, "{later} after {id}");
        let v4 = MessageId::from_random_bytes([0; 16]);
        assert_eq!(v4.as_str(), "00000000-0000-4000-8000-000000000000");
    }
}
