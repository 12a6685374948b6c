//! The Win32 calls of the Windows executor, each behind a safe function: the console
//! session's user token, starting a process in that session, logging a session off, the
//! shutdown privilege and the shutdown itself, locking the workstation and copying the
//! screen with GDI.
//!
//! Part of `platform::windows`, the crate's one module allowed `unsafe` (these exist only
//! as raw Win32 functions). Every handle is wrapped in an owner that closes it, and each
//! call has its buffer and lifetime reasoning next to it.

use std::io::{self, Read};
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::path::Path;
use std::ptr;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    ERROR_NOT_ALL_ASSIGNED, GetLastError, HANDLE, HANDLE_FLAG_INHERIT, LUID, SetHandleInformation,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Graphics::Gdi::{
    BI_RGB, BITMAPINFO, BITMAPINFOHEADER, BitBlt, CAPTUREBLT, CreateCompatibleBitmap,
    CreateCompatibleDC, DIB_RGB_COLORS, DeleteDC, DeleteObject, GetDC, GetDIBits, HBITMAP, HDC,
    HGDIOBJ, ReleaseDC, SRCCOPY, SelectObject,
};
use windows_sys::Win32::Security::{
    AdjustTokenPrivileges, LUID_AND_ATTRIBUTES, LookupPrivilegeValueW, SE_PRIVILEGE_ENABLED,
    SECURITY_ATTRIBUTES, TOKEN_ADJUST_PRIVILEGES, TOKEN_PRIVILEGES, TOKEN_QUERY,
};
use windows_sys::Win32::System::Environment::{CreateEnvironmentBlock, DestroyEnvironmentBlock};
use windows_sys::Win32::System::Pipes::CreatePipe;
use windows_sys::Win32::System::RemoteDesktop::{
    WTS_CURRENT_SERVER_HANDLE, WTSGetActiveConsoleSessionId, WTSLogoffSession, WTSQueryUserToken,
};
use windows_sys::Win32::System::Shutdown::{
    InitiateSystemShutdownExW, LockWorkStation, SHTDN_REASON_FLAG_PLANNED, SHTDN_REASON_MAJOR_OTHER,
};
use windows_sys::Win32::System::Threading::{
    CREATE_NO_WINDOW, CREATE_UNICODE_ENVIRONMENT, CreateProcessAsUserW, GetCurrentProcess,
    GetExitCodeProcess, OpenProcessToken, PROCESS_INFORMATION, STARTF_USESHOWWINDOW,
    STARTF_USESTDHANDLES, STARTUPINFOW, TerminateProcess, WaitForSingleObject,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    GetSystemMetrics, SM_CXVIRTUALSCREEN, SM_CYVIRTUALSCREEN, SM_XVIRTUALSCREEN, SM_YVIRTUALSCREEN,
    SW_HIDE, SetProcessDPIAware,
};

/// What `WTSGetActiveConsoleSessionId` answers when no session is attached to the console.
const NO_SESSION: u32 = 0xFFFF_FFFF;
/// The most a session process may write to its stdout (a screenshot of a very large
/// virtual screen as PNG stays far below this).
const MAX_SESSION_OUTPUT: u64 = 512 * 1024 * 1024;

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// A failed Win32 call: which, and the OS's error code (kept, so a session process can
/// exit with it).
#[derive(Debug)]
pub(crate) struct Win32Error {
    what: String,
    code: i32,
}

impl std::fmt::Display for Win32Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.what,
            io::Error::from_raw_os_error(self.code)
        )
    }
}

impl std::error::Error for Win32Error {}

/// The Win32 error code in `e`, if it carries one.
pub(crate) fn os_code(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Win32Error>())
            .map(|w| w.code)
    })
}

fn check(ok: i32, what: &str) -> io::Result<()> {
    if ok == 0 {
        let e = io::Error::last_os_error();
        let code = e.raw_os_error().unwrap_or(0);
        Err(io::Error::new(
            e.kind(),
            Win32Error {
                what: what.to_owned(),
                code,
            },
        ))
    } else {
        Ok(())
    }
}

/// Takes ownership of a handle a call returned.
fn owned(h: HANDLE) -> OwnedHandle {
    // SAFETY: only called with a valid handle that was just returned to us and that
    // nothing else owns or closes.
    unsafe { OwnedHandle::from_raw_handle(h) }
}

/// The session attached to the physical console, if a user may be in it.
pub(crate) fn active_console_session() -> io::Result<u32> {
    // SAFETY: no arguments, no memory.
    let id = unsafe { WTSGetActiveConsoleSessionId() };
    if id == NO_SESSION {
        return Err(io::Error::other("no session is attached to the console"));
    }
    Ok(id)
}

/// Logs the session off (asynchronously: Windows closes its applications).
pub(crate) fn logoff_session(session: u32) -> io::Result<()> {
    // SAFETY: the current-server pseudo handle and a session id; no memory.
    let ok = unsafe { WTSLogoffSession(WTS_CURRENT_SERVER_HANDLE, session, 0) };
    check(ok, &format!("WTSLogoffSession({session})"))
}

/// What a process started in a user session left.
#[derive(Debug)]
pub(crate) struct SessionExit {
    /// Its exit code (`None`: killed at the time limit).
    pub(crate) code: Option<u32>,
    /// What it wrote to stdout (at most [`MAX_SESSION_OUTPUT`] bytes).
    pub(crate) stdout: Vec<u8>,
}

/// The user's token in `session` (the helper, as LocalSystem, holds SeTcbPrivilege).
fn user_token(session: u32) -> io::Result<OwnedHandle> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: `token` is a valid out pointer; on success it receives a handle we own.
    let ok = unsafe { WTSQueryUserToken(session, &mut token) };
    check(
        ok,
        &format!("WTSQueryUserToken({session}) (is a user signed in?)"),
    )?;
    Ok(owned(token))
}

/// The user's environment block, destroyed on drop.
struct EnvBlock(*mut core::ffi::c_void);

impl EnvBlock {
    fn for_user(token: &OwnedHandle) -> io::Result<Self> {
        let mut env = ptr::null_mut();
        // SAFETY: `env` is a valid out pointer; `token` is a live token handle.
        let ok = unsafe { CreateEnvironmentBlock(&mut env, token.as_raw_handle(), 0) };
        check(ok, "CreateEnvironmentBlock")?;
        Ok(Self(env))
    }
}

impl Drop for EnvBlock {
    fn drop(&mut self) {
        // SAFETY: the block came from CreateEnvironmentBlock and is destroyed once.
        unsafe {
            DestroyEnvironmentBlock(self.0);
        }
    }
}

/// Starts `exe args…` as the user signed in to `session`, on their desktop, hidden, and
/// waits up to `limit` for it (killing it then). Its stdout is collected through a pipe;
/// stdin and stderr are not connected. Blocking.
pub(crate) fn run_in_session(
    session: u32,
    exe: &Path,
    args: &[&str],
    limit: Duration,
) -> io::Result<SessionExit> {
    let token = user_token(session)?;
    let env = EnvBlock::for_user(&token)?;

    // The pipe's write end is inherited by the child; the read end stays ours only.
    let sa = SECURITY_ATTRIBUTES {
        nLength: u32::try_from(size_of::<SECURITY_ATTRIBUTES>()).unwrap_or(0),
        lpSecurityDescriptor: ptr::null_mut(),
        bInheritHandle: 1,
    };
    let (mut read, mut write): (HANDLE, HANDLE) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: valid out pointers and attributes that outlive the call.
    check(
        unsafe { CreatePipe(&mut read, &mut write, &sa, 0) },
        "CreatePipe",
    )?;
    let (read, write) = (owned(read), owned(write));
    // SAFETY: `read` is a live handle we own.
    check(
        unsafe { SetHandleInformation(read.as_raw_handle(), HANDLE_FLAG_INHERIT, 0) },
        "SetHandleInformation",
    )?;

    // Paths cannot contain `"`, and the arguments are this crate's own fixed words.
    let mut cmdline = format!("\"{}\"", exe.display());
    for a in args {
        cmdline.push(' ');
        cmdline.push_str(a);
    }
    let mut cmdline = wide(&cmdline);
    let mut desktop = wide(r"winsta0\default");
    let si = STARTUPINFOW {
        cb: u32::try_from(size_of::<STARTUPINFOW>()).unwrap_or(0),
        lpDesktop: desktop.as_mut_ptr(),
        dwFlags: STARTF_USESTDHANDLES | STARTF_USESHOWWINDOW,
        wShowWindow: u16::try_from(SW_HIDE).unwrap_or(0),
        hStdInput: ptr::null_mut(),
        hStdOutput: write.as_raw_handle(),
        hStdError: ptr::null_mut(),
        // SAFETY: STARTUPINFOW is plain data; all-zero is its documented empty value.
        ..unsafe { std::mem::zeroed() }
    };
    // SAFETY: PROCESS_INFORMATION is plain data, filled by the call.
    let mut pi: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `cmdline` and `desktop` are NUL-terminated, writable and alive for the
    // call (CreateProcessAsUserW may write into the command line); `si` and `env` too;
    // only inheritable handles are inherited, and the only one we made is `write`.
    let ok = unsafe {
        CreateProcessAsUserW(
            token.as_raw_handle(),
            ptr::null(),
            cmdline.as_mut_ptr(),
            ptr::null(),
            ptr::null(),
            1,
            CREATE_UNICODE_ENVIRONMENT | CREATE_NO_WINDOW,
            env.0,
            ptr::null(),
            &si,
            &mut pi,
        )
    };
    check(ok, &format!("CreateProcessAsUserW in session {session}"))?;
    let process = owned(pi.hProcess);
    drop(owned(pi.hThread));
    // The child has its copy: ours must close, or the reader never sees the end.
    drop(write);

    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let r = std::fs::File::from(read)
            .take(MAX_SESSION_OUTPUT)
            .read_to_end(&mut out);
        r.map(|_| out)
    });
    let ms = u32::try_from(limit.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: a live process handle.
    let waited = unsafe { WaitForSingleObject(process.as_raw_handle(), ms) };
    let code = if waited == WAIT_OBJECT_0 {
        let mut code = 0u32;
        // SAFETY: a live process handle and a valid out pointer.
        check(
            unsafe { GetExitCodeProcess(process.as_raw_handle(), &mut code) },
            "GetExitCodeProcess",
        )?;
        Some(code)
    } else if waited == WAIT_TIMEOUT {
        // SAFETY: a live process handle; ending it closes its end of the pipe.
        unsafe {
            TerminateProcess(process.as_raw_handle(), 1);
        }
        None
    } else {
        return Err(io::Error::last_os_error());
    };
    let stdout = reader
        .join()
        .map_err(|_| io::Error::other("the session output reader panicked"))??;
    Ok(SessionExit { code, stdout })
}

/// Enables SeShutdownPrivilege in this process's token (held but disabled by default).
pub(crate) fn enable_shutdown_privilege() -> io::Result<()> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: the current-process pseudo handle and a valid out pointer.
    check(
        unsafe {
            OpenProcessToken(
                GetCurrentProcess(),
                TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY,
                &mut token,
            )
        },
        "OpenProcessToken",
    )?;
    let token = owned(token);
    let name = wide("SeShutdownPrivilege");
    let mut luid = LUID {
        LowPart: 0,
        HighPart: 0,
    };
    // SAFETY: a NUL-terminated name and a valid out pointer; null system = this one.
    check(
        unsafe { LookupPrivilegeValueW(ptr::null(), name.as_ptr(), &mut luid) },
        "LookupPrivilegeValueW(SeShutdownPrivilege)",
    )?;
    let tp = TOKEN_PRIVILEGES {
        PrivilegeCount: 1,
        Privileges: [LUID_AND_ATTRIBUTES {
            Luid: luid,
            Attributes: SE_PRIVILEGE_ENABLED,
        }],
    };
    // SAFETY: a live token handle opened for adjusting, and `tp` alive for the call; no
    // previous state is asked for.
    check(
        unsafe {
            AdjustTokenPrivileges(
                token.as_raw_handle(),
                0,
                &tp,
                0,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        },
        "AdjustTokenPrivileges",
    )?;
    // It "succeeds" without enabling a privilege the account does not hold.
    // SAFETY: reads this thread's last error.
    if unsafe { GetLastError() } == ERROR_NOT_ALL_ASSIGNED {
        return Err(io::Error::other(
            "this account does not hold SeShutdownPrivilege (run the helper as LocalSystem)",
        ));
    }
    Ok(())
}

/// The shutdown reason: planned, "other".
pub(crate) const SHUTDOWN_REASON: u32 = SHTDN_REASON_MAJOR_OTHER | SHTDN_REASON_FLAG_PLANNED;

/// Schedules a reboot or power-off of this machine in `delay_s` seconds, with `message`
/// shown to the user and recorded with [`SHUTDOWN_REASON`].
pub(crate) fn initiate_shutdown(
    message: &str,
    delay_s: u32,
    force: bool,
    reboot: bool,
) -> io::Result<()> {
    enable_shutdown_privilege()?;
    let message = wide(message);
    // SAFETY: a NUL-terminated message alive for the call; null machine = this one.
    let ok = unsafe {
        InitiateSystemShutdownExW(
            ptr::null(),
            message.as_ptr(),
            delay_s,
            i32::from(force),
            i32::from(reboot),
            SHUTDOWN_REASON,
        )
    };
    check(ok, "InitiateSystemShutdownExW")
}

/// Locks the workstation (in the calling process's session).
pub(crate) fn lock_workstation() -> io::Result<()> {
    // SAFETY: no arguments, no memory.
    check(unsafe { LockWorkStation() }, "LockWorkStation")
}

/// GDI objects released in reverse order of creation.
struct Gdi {
    screen: HDC,
    memory: HDC,
    bitmap: HBITMAP,
}

impl Drop for Gdi {
    fn drop(&mut self) {
        // SAFETY: each object was created by us, is not selected anywhere any more (the
        // capture restores the old bitmap first), and is released exactly once; null ones
        // were never created and are skipped.
        unsafe {
            if !self.bitmap.is_null() {
                DeleteObject(self.bitmap as HGDIOBJ);
            }
            if !self.memory.is_null() {
                DeleteDC(self.memory);
            }
            if !self.screen.is_null() {
                ReleaseDC(ptr::null_mut(), self.screen);
            }
        }
    }
}

/// A copy of the whole virtual screen (every monitor) of the calling process's session:
/// width, height and RGB rows, top to bottom.
pub(crate) fn capture_screen() -> io::Result<(u32, u32, Vec<u8>)> {
    // SAFETY: no arguments; physical pixels rather than scaled ones.
    unsafe {
        SetProcessDPIAware();
    }
    // SAFETY: plain metric queries.
    let (x, y, w, h) = unsafe {
        (
            GetSystemMetrics(SM_XVIRTUALSCREEN),
            GetSystemMetrics(SM_YVIRTUALSCREEN),
            GetSystemMetrics(SM_CXVIRTUALSCREEN),
            GetSystemMetrics(SM_CYVIRTUALSCREEN),
        )
    };
    let (Ok(width), Ok(height)) = (u32::try_from(w), u32::try_from(h)) else {
        return Err(io::Error::other("the virtual screen has no size"));
    };
    if width == 0 || height == 0 {
        return Err(io::Error::other(
            "the virtual screen has no size (no desktop in this session?)",
        ));
    }
    let mut gdi = Gdi {
        screen: ptr::null_mut(),
        memory: ptr::null_mut(),
        bitmap: ptr::null_mut(),
    };
    // SAFETY: a null window means the whole screen; the DC is released by `gdi`.
    gdi.screen = unsafe { GetDC(ptr::null_mut()) };
    if gdi.screen.is_null() {
        return Err(io::Error::other("GetDC(screen) failed"));
    }
    // SAFETY: a live screen DC; the results are owned by `gdi`.
    gdi.memory = unsafe { CreateCompatibleDC(gdi.screen) };
    // SAFETY: as above, with a positive size.
    gdi.bitmap = unsafe { CreateCompatibleBitmap(gdi.screen, w, h) };
    if gdi.memory.is_null() || gdi.bitmap.is_null() {
        return Err(io::Error::other("cannot create a bitmap for the screen"));
    }
    // SAFETY: live DC and bitmap; the previous object is put back before GetDIBits.
    let old = unsafe { SelectObject(gdi.memory, gdi.bitmap as HGDIOBJ) };
    // SAFETY: both DCs are live and the bitmap is `w` x `h`.
    let copied = unsafe {
        BitBlt(
            gdi.memory,
            0,
            0,
            w,
            h,
            gdi.screen,
            x,
            y,
            SRCCOPY | CAPTUREBLT,
        )
    };
    // SAFETY: restores what was selected; the bitmap must not be selected for GetDIBits.
    unsafe {
        SelectObject(gdi.memory, old);
    }
    check(copied, "BitBlt")?;
    let row_bytes = usize::try_from(width)
        .ok()
        .and_then(|w| w.checked_mul(4))
        .ok_or_else(|| io::Error::other("screen too wide"))?;
    let total = usize::try_from(height)
        .ok()
        .and_then(|h| h.checked_mul(row_bytes))
        .ok_or_else(|| io::Error::other("screen too large"))?;
    let mut bgra = vec![0u8; total];
    let mut info = BITMAPINFO {
        bmiHeader: BITMAPINFOHEADER {
            biSize: u32::try_from(size_of::<BITMAPINFOHEADER>()).unwrap_or(0),
            biWidth: w,
            // Negative: rows top to bottom.
            biHeight: h.saturating_neg(),
            biPlanes: 1,
            biBitCount: 32,
            biCompression: BI_RGB,
            biSizeImage: 0,
            biXPelsPerMeter: 0,
            biYPelsPerMeter: 0,
            biClrUsed: 0,
            biClrImportant: 0,
        },
        // SAFETY: plain data; unused for 32-bit BI_RGB.
        bmiColors: unsafe { std::mem::zeroed() },
    };
    // SAFETY: `bgra` holds exactly `height` rows of `width` 32-bit pixels, the format
    // `info` asks for; the bitmap is deselected.
    let lines = unsafe {
        GetDIBits(
            gdi.memory,
            gdi.bitmap,
            0,
            height,
            bgra.as_mut_ptr().cast(),
            &mut info,
            DIB_RGB_COLORS,
        )
    };
    if lines <= 0 {
        return Err(io::Error::other("GetDIBits copied no lines"));
    }
    drop(gdi);
    let rgb = bgra
        .chunks_exact(4)
        .flat_map(|p| match p {
            [b, g, r, _] => [*r, *g, *b],
            _ => [0, 0, 0],
        })
        .collect();
    Ok((width, height, rgb))
}
