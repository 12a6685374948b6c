//! Lines for the person at the PC (and for tests that wait for them) on stdout.
//!
//! Unlike `println!`, a closed or broken stdout (a service without a console, a test that
//! stopped reading) never stops the agent: the line is dropped. Under the Windows service
//! control manager, which gives the agent no console, [`to_log`] sends the lines to the
//! service's log file instead (stdout lines at `info`, stderr lines at `warn`).

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static TO_LOG: AtomicBool = AtomicBool::new(false);

/// From now on, lines go to the tracing log instead of stdout and stderr.
pub(crate) fn to_log() {
    TO_LOG.store(true, Ordering::Relaxed);
}

fn logging() -> bool {
    TO_LOG.load(Ordering::Relaxed)
}

/// Writes one line to stdout, flushed, ignoring write errors.
pub(crate) fn line(args: fmt::Arguments<'_>) {
    if logging() {
        tracing::info!(target: "tether_agent", "{args}");
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Writes text as is (no newline added), flushed, ignoring write errors.
pub(crate) fn text(s: &str) {
    if logging() {
        // Text drawn for a terminal (the QR code): pairing.json and pair-qr.png hold it.
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// Writes one line to stderr, ignoring write errors.
pub(crate) fn err_line(args: fmt::Arguments<'_>) {
    if logging() {
        tracing::warn!(target: "tether_agent", "{args}");
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args);
    let _ = err.write_all(b"\n");
}

/// `say_err!("...", args)`: [`err_line`] with `format_args!`.
macro_rules! say_err {
    ($($arg:tt)*) => {
        $crate::out::err_line(format_args!($($arg)*))
    };
}

/// `say!("...", args)`: [`line`] with `format_args!`.
macro_rules! say {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
