//! Object keys: checked once, when made, so every backend can use them as a file path or
//! an S3 key as they are.

use std::fmt;

use crate::ObjectsError;

/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// The most `/`-separated segments a key may have.
pub const MAX_KEY_SEGMENTS: usize = 16;

/// The longest segment, in bytes: a segment is a file name in the local backend, and
/// file systems allow 255 bytes.
pub const MAX_SEGMENT_LEN: usize = 128;

/// A valid object key: 1 to [`MAX_KEY_LEN`] bytes of `A-Z a-z 0-9 - _ .` in at most
/// [`MAX_KEY_SEGMENTS`] segments of at most [`MAX_SEGMENT_LEN`] bytes separated by single
/// `/`; no segment is empty or starts with `.` (so no `.`, `..`, hidden files, or leading, trailing or doubled `/`).
///
/// The rules make a key safe as a relative path on any filesystem (nothing escapes the
/// root, and the local backend's `.`-prefixed temporary files can never be named), as an
/// S3 key, and in a URL path without escaping.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Checks `key` against the rules above.
    pub fn new(key: &str) -> Result<Self, ObjectsError> {
        let bad = |why: &str| Err(ObjectsError::InvalidKey(why.to_owned()));
        if key.is_empty() {
            return bad("the key is empty");
        }
        if key.len() > MAX_KEY_LEN {
            return bad("the key is longer than 256 bytes");
        }
        if let Some(c) = key
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
        {
            // The character is not echoed: it came from outside and may be a control byte.
            return if c.is_ascii_graphic() || c == ' ' {
                bad("keys may only use A-Z a-z 0-9 - _ . and /")
            } else {
                bad("the key has a non-printable or non-ASCII character")
            };
        }
        let mut segments = 0usize;
        for segment in key.split('/') {
            segments = segments.saturating_add(1);
            if segment.is_empty() {
                return bad("the key has an empty segment (leading, trailing or doubled /)");
            }
            if segment.starts_with('.') {
                return bad("a key segment may not start with . (no . or ..)");
            }
            if segment.len() > MAX_SEGMENT_LEN {
                return bad("a key segment is longer than 128 bytes");
            }
        }
        if segments > MAX_KEY_SEGMENTS {
            return bad("the key has more than 16 segments");
        }
        Ok(Self(key.to_owned()))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({:?})", self.0)
    }
}

impl std::str::FromStr for ObjectKey {
    type Err = ObjectsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for k in [
            "a",
            "artifacts/0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10",
            "rel_0.2.0/agent.zip",
            "A-Z_0.9",
            "a.",
            "a..b",
            &"x".repeat(MAX_SEGMENT_LEN),
            &format!("{}/{}", "x".repeat(MAX_SEGMENT_LEN), "y".repeat(127)),
            &vec!["s"; MAX_KEY_SEGMENTS].join("/"),
        ] {
            assert_eq!(ObjectKey::new(k).unwrap().as_str(), k, "{k:?}");
        }
    }

    #[test]
    fn refuses_unsafe_keys() {
        for k in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "a/../b",
            "a/./b",
            "a/.hidden",
            ".tmp-1",
            "/abs",
            "trailing/",
            "a//b",
            "back\\slash",
            "sp ace",
            "new\nline",
            "nul\0",
            "per%2fcent",
            "q?x=1",
            "hash#x",
            "ünïcode",
            "C:drive",
            &"x".repeat(MAX_SEGMENT_LEN + 1),
            &format!(
                "{}/{}",
                "x".repeat(MAX_SEGMENT_LEN),
                "y".repeat(MAX_SEGMENT_LEN)
            ),
            &vec!["s"; MAX_KEY_SEGMENTS + 1].join("/"),
        ] {
            assert!(
                matches!(ObjectKey::new(k), Err(ObjectsError::InvalidKey(_))),
                "{k:?} was accepted"
            );
        }
    }

    #[test]
    fn error_does_not_echo_the_key() {
        let e = ObjectKey::new("a\u{1b}[31mred").unwrap_err().to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
    }
}
