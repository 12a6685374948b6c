//! Certificate serial numbers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::TrustError;
use crate::random;

/// Length of the serials this CA gives: 16 random bytes, the first in `0x01..=0x7f` so the
/// DER INTEGER is positive and exactly 16 bytes long.
pub const SERIAL_LEN: usize = 16;

/// The longest serial RFC 5280 allows.
pub const MAX_SERIAL_LEN: usize = 20;

/// A certificate serial number: the big-endian magnitude of a positive integer, without
/// leading zero bytes. Shown and serialized as lowercase hex (`"4f0c…"`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertSerial(Vec<u8>);

impl CertSerial {
    /// A fresh random serial for a new certificate.
    pub(crate) fn random() -> Result<Self, TrustError> {
        let mut b = random::array::<SERIAL_LEN>()?;
        if let Some(first) = b.first_mut() {
            *first &= 0x7f;
            if *first == 0 {
                *first = 1;
            }
        }
        Ok(Self(b.to_vec()))
    }

    /// A serial from the bytes of a DER INTEGER's content or a magnitude: leading zero
    /// bytes are dropped; zero, and anything longer than 20 bytes, is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TrustError> {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let magnitude = bytes.get(start..).unwrap_or_default();
        if magnitude.is_empty() || magnitude.len() > MAX_SERIAL_LEN {
            return Err(TrustError::input(
                "serial",
                "must be a non-zero integer of 1-20 bytes",
            ));
        }
        Ok(Self(magnitude.to_vec()))
    }

    /// The big-endian magnitude.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for CertSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for CertSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertSerial({self})")
    }
}

impl FromStr for CertSerial {
    type Err = TrustError;

    /// Hex digits, either case, optionally `:`-separated pairs (as tools print them).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: String = s.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(digits)
            .map_err(|_| TrustError::input("serial", "not an even number of hex digits"))?;
        Self::from_bytes(&bytes)
    }
}

impl Serialize for CertSerial {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for CertSerial {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
