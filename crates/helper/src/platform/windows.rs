//! The helper's Win32 calls: the named pipe's security descriptor, and who is at the other
//! end of a pipe instance (the kernel's answer, not the caller's claim).
//!
//! This is the one module of the crate that may use `unsafe`: `std` and tokio offer no
//! way to give a pipe a DACL, ask the kernel for a pipe client's process id, or read a
//! process's image path and token. Each call's buffer and handle rules are stated where
//! it is made; every handle and every buffer Windows allocates is owned by a Rust value
//! that releases it on drop.
#![allow(
    unsafe_code,
    reason = "Win32 FFI: pipe security descriptors and the pipe client's identity"
)]

/// The executor's Win32 calls (sessions, power, lock, screen capture).
pub(crate) mod actions;

use std::ffi::{OsStr, OsString, c_void};
use std::io;
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::path::PathBuf;
use std::ptr;

use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use windows_sys::Win32::Foundation::{ERROR_INSUFFICIENT_BUFFER, HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
    ConvertStringSidToSidW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, LookupAccountNameW, PSID, SECURITY_ATTRIBUTES, SID_NAME_USE, TOKEN_QUERY,
    TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Pipes::GetNamedPipeClientProcessId;
use windows_sys::Win32::System::Threading::{
    OpenProcess, OpenProcessToken, PROCESS_NAME_WIN32, PROCESS_QUERY_LIMITED_INFORMATION,
    QueryFullProcessImageNameW,
};

/// The longest path `QueryFullProcessImageNameW` can return (the `\\?\` limit).
const MAX_IMAGE_PATH: usize = 32_768;

/// A security descriptor made from SDDL, freed with `LocalFree` on drop.
#[derive(Debug)]
pub(crate) struct SecurityDescriptor {
    ptr: *mut c_void,
}

// SAFETY: the descriptor is a self-contained block of memory that this value alone owns
// and that Windows only reads after it is made; nothing in it is tied to a thread.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as above; `&SecurityDescriptor` only ever hands the pointer to calls that read.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    /// Parses an SDDL string (`D:P(A;;GA;;;SY)…`).
    pub(crate) fn from_sddl(sddl: &str) -> io::Result<Self> {
        let wide = wide_nul(OsStr::new(sddl));
        let mut ptr: *mut c_void = ptr::null_mut();
        // SAFETY: `wide` is NUL-terminated and outlives the call; `ptr` receives a
        // LocalAlloc'ed descriptor that we own from here on (freed in Drop).
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide.as_ptr(),
                SDDL_REVISION_1,
                &mut ptr,
                ptr::null_mut(),
            )
        };
        if ok == 0 || ptr.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { ptr })
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from ConvertStringSecurityDescriptorToSecurityDescriptorW,
        // which documents LocalFree as its release; it is freed once.
        unsafe { LocalFree(self.ptr) };
    }
}

/// Creates an instance of the pipe `name` whose DACL is `security`. With `first`, the call
/// fails if any instance of that name exists already (so nobody can have squatted it);
/// remote clients are always refused.
pub(crate) fn create_pipe_instance(
    name: &OsStr,
    first: bool,
    security: &SecurityDescriptor,
) -> io::Result<NamedPipeServer> {
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: u32::try_from(size_of::<SECURITY_ATTRIBUTES>()).unwrap_or(u32::MAX),
        lpSecurityDescriptor: security.ptr,
        bInheritHandle: 0,
    };
    let mut options = ServerOptions::new();
    options
        .first_pipe_instance(first)
        .reject_remote_clients(true);
    // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor `security`
    // keeps alive for the call; CreateNamedPipeW copies what it needs from it.
    unsafe {
        options.create_with_security_attributes_raw(name, (&raw mut attributes).cast::<c_void>())
    }
}

/// The id of the process at the client end of a connected pipe instance.
pub(crate) fn pipe_client_pid(pipe: &NamedPipeServer) -> io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: the handle is the live pipe instance borrowed from `pipe`; `pid` is a valid
    // out-pointer.
    let ok = unsafe { GetNamedPipeClientProcessId(pipe.as_raw_handle(), &mut pid) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// A process opened for querying its image and token.
#[derive(Debug)]
pub(crate) struct Process {
    handle: OwnedHandle,
}

impl Process {
    /// Opens process `pid` with the least rights that read its image path and token.
    pub(crate) fn open(pid: u32) -> io::Result<Self> {
        // SAFETY: plain call; a non-null result is a process handle that we own.
        let raw = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if raw.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is an open handle owned by nobody else; OwnedHandle closes it.
        let handle = unsafe { OwnedHandle::from_raw_handle(raw) };
        Ok(Self { handle })
    }

    fn raw(&self) -> HANDLE {
        self.handle.as_raw_handle()
    }

    /// The full Win32 path of the executable the process runs (the kernel's record).
    pub(crate) fn image_path(&self) -> io::Result<PathBuf> {
        let mut buf = vec![0u16; MAX_IMAGE_PATH];
        let mut len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        // SAFETY: `buf` holds `len` u16s; on success `len` is the count written (no NUL).
        let ok = unsafe {
            QueryFullProcessImageNameW(self.raw(), PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len)
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        let written = usize::try_from(len).unwrap_or(usize::MAX);
        let path = buf.get(..written).ok_or_else(|| {
            io::Error::other("QueryFullProcessImageNameW reported more than it was given")
        })?;
        Ok(PathBuf::from(OsString::from_wide(path)))
    }

    /// The SID (as a string, `S-1-5-…`) of the user the process's token runs as.
    pub(crate) fn token_user_sid(&self) -> io::Result<String> {
        let mut token_raw: HANDLE = ptr::null_mut();
        // SAFETY: the process handle is live; `token_raw` receives a token handle we own.
        let ok = unsafe { OpenProcessToken(self.raw(), TOKEN_QUERY, &mut token_raw) };
        if ok == 0 || token_raw.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `token_raw` is an open handle owned by nobody else.
        let token = unsafe { OwnedHandle::from_raw_handle(token_raw) };
        let mut needed = 0u32;
        // SAFETY: a size query: no buffer, `needed` receives the size.
        unsafe {
            GetTokenInformation(
                token.as_raw_handle(),
                TokenUser,
                ptr::null_mut(),
                0,
                &mut needed,
            )
        };
        let needed_bytes = usize::try_from(needed).unwrap_or(0);
        if needed_bytes < size_of::<TOKEN_USER>() {
            return Err(io::Error::last_os_error());
        }
        // u64s: TOKEN_USER holds pointers, so the buffer must be pointer-aligned.
        let mut buf = vec![0u64; needed_bytes.div_ceil(size_of::<u64>())];
        let mut got = 0u32;
        // SAFETY: `buf` has at least `needed` bytes, aligned for TOKEN_USER.
        let ok = unsafe {
            GetTokenInformation(
                token.as_raw_handle(),
                TokenUser,
                buf.as_mut_ptr().cast::<c_void>(),
                needed,
                &mut got,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: on success the buffer starts with a TOKEN_USER whose SID points into
        // the same buffer, which lives until the end of this function.
        let user = unsafe { &*buf.as_ptr().cast::<TOKEN_USER>() };
        sid_to_string(user.User.Sid)
    }
}

/// The canonical string form of a SID (`S-1-5-…`).
fn sid_to_string(sid: PSID) -> io::Result<String> {
    let mut out: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` is a valid SID for the call; `out` receives a LocalAlloc'ed,
    // NUL-terminated string that is copied and freed below.
    let ok = unsafe { ConvertSidToStringSidW(sid, &mut out) };
    if ok == 0 || out.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `out` is NUL-terminated (documented), read before it is freed.
    let text = unsafe { from_wide_nul(out) };
    // SAFETY: allocated by ConvertSidToStringSidW for us to LocalFree, freed once.
    unsafe { LocalFree(out.cast::<c_void>()) };
    Ok(text)
}

/// Resolves an account to the canonical string form of its SID: `S-1-…` is parsed (and
/// normalized), anything else (`NT SERVICE\tether-agent`, `DOMAIN\user`) is looked up.
pub(crate) fn account_sid(account: &str) -> io::Result<String> {
    if account.starts_with("S-1-") || account.starts_with("s-1-") {
        let wide = wide_nul(OsStr::new(account));
        let mut sid: PSID = ptr::null_mut();
        // SAFETY: `wide` is NUL-terminated; `sid` receives a LocalAlloc'ed SID.
        let ok = unsafe { ConvertStringSidToSidW(wide.as_ptr(), &mut sid) };
        if ok == 0 || sid.is_null() {
            return Err(io::Error::last_os_error());
        }
        let text = sid_to_string(sid);
        // SAFETY: allocated by ConvertStringSidToSidW for us to LocalFree, freed once.
        unsafe { LocalFree(sid) };
        return text;
    }
    let wide = wide_nul(OsStr::new(account));
    let mut sid_len = 0u32;
    let mut domain_len = 0u32;
    let mut use_ = SID_NAME_USE::default();
    // SAFETY: a size query: null buffers with zero sizes; the sizes come back.
    let ok = unsafe {
        LookupAccountNameW(
            ptr::null(),
            wide.as_ptr(),
            ptr::null_mut(),
            &mut sid_len,
            ptr::null_mut(),
            &mut domain_len,
            &mut use_,
        )
    };
    if ok == 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != i32::try_from(ERROR_INSUFFICIENT_BUFFER).ok() {
            return Err(e);
        }
    }
    // u64s: a SID is read as a structure, so keep the buffer aligned.
    let mut sid = vec![0u64; usize::try_from(sid_len).unwrap_or(0).div_ceil(8).max(1)];
    let mut domain = vec![0u16; usize::try_from(domain_len).unwrap_or(0).max(1)];
    let mut domain_len = u32::try_from(domain.len()).unwrap_or(u32::MAX);
    // SAFETY: both buffers are at least the sizes Windows asked for.
    let ok = unsafe {
        LookupAccountNameW(
            ptr::null(),
            wide.as_ptr(),
            sid.as_mut_ptr().cast::<c_void>(),
            &mut sid_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut use_,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    sid_to_string(sid.as_mut_ptr().cast::<c_void>())
}

fn wide_nul(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

/// Copies a NUL-terminated UTF-16 string.
///
/// # Safety
/// `p` must point to a readable, NUL-terminated UTF-16 string.
unsafe fn from_wide_nul(p: *const u16) -> String {
    let mut len = 0usize;
    // SAFETY: the caller guarantees a NUL within the readable string.
    while unsafe { *p.add(len) } != 0 {
        len = len.saturating_add(1);
    }
    // SAFETY: `len` u16s before the NUL are readable.
    let slice = unsafe { std::slice::from_raw_parts(p, len) };
    String::from_utf16_lossy(slice)
}
