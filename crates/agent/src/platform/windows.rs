//! Windows implementations.
//!
//! Secrets (the agent key, the queue key) are sealed with DPAPI in machine scope before
//! they reach the disk: the state directory's ACL (set by `tether-agent service install`:
//! SYSTEM, Administrators and the agent's own virtual account) says who may read the
//! files, and DPAPI makes a copied file useless on another machine. The machine id is
//! the registry's `MachineGuid`.
//!
//! Why unsafe is allowed in this module and nowhere else in the crate: DPAPI
//! (`CryptProtectData`/`CryptUnprotectData`), the registry (`RegGetValueW`) and the
//! system CPU times (`GetSystemTimes`) are reachable only through the raw Win32
//! functions. Each call is wrapped in a safe
//! function here, with the buffer and lifetime reasoning next to it.
#![allow(
    unsafe_code,
    reason = "DPAPI and registry calls (see the module documentation)"
)]

use std::io::{self, Write};
use std::path::Path;
use std::ptr;

use windows_sys::Win32::Foundation::{ERROR_SUCCESS, FILETIME, LocalFree};
use windows_sys::Win32::Security::Cryptography::{
    CRYPT_INTEGER_BLOB, CRYPTPROTECT_LOCAL_MACHINE, CRYPTPROTECT_UI_FORBIDDEN, CryptProtectData,
    CryptUnprotectData,
};
use windows_sys::Win32::System::Registry::{
    HKEY_LOCAL_MACHINE, RRF_RT_REG_SZ, RRF_SUBKEY_WOW6464KEY, RegGetValueW,
};
use windows_sys::Win32::System::Threading::GetSystemTimes;
use zeroize::{Zeroize, Zeroizing};

pub(super) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

pub(super) fn create_private_dir(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

/// Domain separation of sealed secrets: a blob sealed for one purpose does not open for
/// another (DPAPI's "optional entropy").
fn entropy(purpose: &str) -> Vec<u8> {
    format!("tether-agent/{purpose}").into_bytes()
}

/// A read-only view of `bytes` as DPAPI's input blob.
fn blob(bytes: &[u8]) -> io::Result<CRYPT_INTEGER_BLOB> {
    Ok(CRYPT_INTEGER_BLOB {
        cbData: u32::try_from(bytes.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "secret too large"))?,
        // DPAPI takes a mutable pointer but only reads its input.
        pbData: bytes.as_ptr().cast_mut(),
    })
}

/// Copies a blob DPAPI allocated into a Vec, wipes it and frees it with `LocalFree`.
fn take_output(out: CRYPT_INTEGER_BLOB) -> Zeroizing<Vec<u8>> {
    if out.pbData.is_null() {
        return Zeroizing::new(Vec::new());
    }
    let len = usize::try_from(out.cbData).unwrap_or(0);
    // SAFETY: on success DPAPI sets `pbData` to a LocalAlloc'd buffer of `cbData` bytes
    // that we own; it is viewed once, copied, wiped and freed, and never used again.
    unsafe {
        let view = std::slice::from_raw_parts_mut(out.pbData, len);
        let copy = Zeroizing::new(view.to_vec());
        view.zeroize();
        LocalFree(out.pbData.cast());
        copy
    }
}

pub(super) fn seal_secret(purpose: &str, plain: &[u8]) -> io::Result<Vec<u8>> {
    let input = blob(plain)?;
    let extra = entropy(purpose);
    let entropy = blob(&extra)?;
    let mut out = CRYPT_INTEGER_BLOB {
        cbData: 0,
        pbData: ptr::null_mut(),
    };
    // SAFETY: `input` and `entropy` point into `plain` and `extra`, alive for the call
    // and only read by it; the description, reserved and prompt pointers may be null;
    // `out` is written by the call and handed to `take_output`, which frees it.
    let ok = unsafe {
        CryptProtectData(
            &input,
            ptr::null(),
            &entropy,
            ptr::null(),
            ptr::null(),
            CRYPTPROTECT_LOCAL_MACHINE | CRYPTPROTECT_UI_FORBIDDEN,
            &mut out,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(take_output(out).to_vec())
}

pub(super) fn open_secret(purpose: &str, sealed: &[u8]) -> io::Result<Zeroizing<Vec<u8>>> {
    let input = blob(sealed)?;
    let extra = entropy(purpose);
    let entropy = blob(&extra)?;
    let mut out = CRYPT_INTEGER_BLOB {
        cbData: 0,
        pbData: ptr::null_mut(),
    };
    // SAFETY: as in `seal_secret`; no description is asked for (null), so nothing else
    // is allocated for us.
    let ok = unsafe {
        CryptUnprotectData(
            &input,
            ptr::null_mut(),
            &entropy,
            ptr::null(),
            ptr::null(),
            CRYPTPROTECT_UI_FORBIDDEN,
            &mut out,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(take_output(out))
}

/// `HKLM\SOFTWARE\Microsoft\Cryptography\MachineGuid` (the 64-bit view).
pub(super) fn machine_guid() -> io::Result<String> {
    let key = wide(r"SOFTWARE\Microsoft\Cryptography");
    let value = wide("MachineGuid");
    // A GUID is 36 characters; room for a longer value than that, and the NUL.
    let mut buf = [0u16; 128];
    let mut size = u32::try_from(size_of_val(&buf)).unwrap_or(0);
    // SAFETY: `key` and `value` are NUL-terminated UTF-16 strings alive for the call;
    // `buf` is writable for `size` bytes, which the call updates to the bytes written;
    // the type pointer may be null.
    let status = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            key.as_ptr(),
            value.as_ptr(),
            RRF_RT_REG_SZ | RRF_SUBKEY_WOW6464KEY,
            ptr::null_mut(),
            buf.as_mut_ptr().cast(),
            &mut size,
        )
    };
    if status != ERROR_SUCCESS {
        return Err(io::Error::from_raw_os_error(
            i32::try_from(status).unwrap_or(i32::MAX),
        ));
    }
    let units = usize::try_from(size).unwrap_or(0) / 2;
    let text = String::from_utf16_lossy(buf.get(..units).unwrap_or_default());
    let guid = text.trim_end_matches('\0').trim().to_owned();
    if guid.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "MachineGuid is empty",
        ));
    }
    Ok(guid)
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

pub(super) fn machine_id() -> Option<String> {
    match machine_guid() {
        Ok(g) => Some(g),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the registry's MachineGuid; using a random id kept in the state dir");
            None
        }
    }
}

pub(super) fn cpu_times() -> Option<super::CpuTimes> {
    let zero = || FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut idle, mut kernel, mut user) = (zero(), zero(), zero());
    // SAFETY: three valid out pointers, written by the call.
    let ok = unsafe { GetSystemTimes(&mut idle, &mut kernel, &mut user) };
    if ok == 0 {
        return None;
    }
    let ticks = |f: FILETIME| (u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime);
    // Kernel time includes idle time.
    Some(super::CpuTimes {
        idle: ticks(idle),
        total: ticks(kernel).saturating_add(ticks(user)),
    })
}

pub(super) fn hostname() -> Option<String> {
    std::env::var("COMPUTERNAME")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

pub(super) fn report_disk(_mount: &str, _file_system: &str) -> bool {
    true
}

pub(super) fn is_loopback_interface(name: &str) -> bool {
    name.to_ascii_lowercase().contains("loopback")
}

pub(super) async fn shutdown_signal() {
    use tokio::signal::windows::{ctrl_break, ctrl_shutdown};
    let (Ok(mut brk), Ok(mut shutdown)) = (ctrl_break(), ctrl_shutdown()) else {
        tracing::warn!("cannot listen for Ctrl-Break or shutdown; only Ctrl-C stops the agent");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = brk.recv() => {}
        _ = shutdown.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn dpapi_round_trips_and_binds_the_purpose() {
        let secret = b"32 bytes of a queue key, roughly";
        let sealed = seal_secret("queue.key", secret).expect("CryptProtectData");
        assert_ne!(sealed.as_slice(), secret.as_slice());
        let opened = open_secret("queue.key", &sealed).expect("CryptUnprotectData");
        assert_eq!(opened.as_slice(), secret.as_slice());
        assert!(
            open_secret("agent-key.pk8", &sealed).is_err(),
            "a blob sealed for one purpose must not open for another"
        );
        assert!(open_secret("queue.key", b"not a DPAPI blob").is_err());
    }

    #[test]
    fn cpu_times_are_read_and_grow() {
        let a = cpu_times().expect("GetSystemTimes");
        let b = cpu_times().expect("GetSystemTimes");
        assert!(b.total >= a.total && a.total >= a.idle);
        assert!((0.0..=100.0).contains(&b.busy_percent_since(a)));
    }

    #[test]
    fn machine_guid_is_read_or_the_error_says_why() {
        match machine_guid() {
            Ok(g) => {
                assert_eq!(g.len(), 36, "{g}");
                assert_eq!(g.matches('-').count(), 4, "{g}");
            }
            Err(e) => {
                let text = e.to_string();
                assert!(!text.is_empty());
                eprintln!("MachineGuid unavailable here: {text}");
            }
        }
    }
}
