//! The SID of a service's virtual account, `NT SERVICE\<name>`: `S-1-5-80-` followed by
//! the five little-endian 32-bit words of SHA-1 over the upper-cased name in UTF-16LE.
//! Computing it lets `install` grant the agent's account access before (or without)
//! asking the OS to resolve the name, which only works once the service exists.

use sha1::{Digest, Sha1};

/// `S-1-5-80-…` of `NT SERVICE\<service>`.
pub fn service_sid(service: &str) -> String {
    let mut h = Sha1::new();
    for unit in service.to_uppercase().encode_utf16() {
        h.update(unit.to_le_bytes());
    }
    let digest = h.finalize();
    let words: Vec<String> = digest
        .chunks_exact(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w.copy_from_slice(c);
            u32::from_le_bytes(w).to_string()
        })
        .collect();
    format!("S-1-5-80-{}", words.join("-"))
}

/// `NT AUTHORITY\SYSTEM`.
pub const LOCAL_SYSTEM: &str = "S-1-5-18";
/// `BUILTIN\Administrators`.
pub const ADMINISTRATORS: &str = "S-1-5-32-544";
