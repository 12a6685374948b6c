//! Lines for the person at the PC (and for tests that wait for them) on stdout.
//!
//! Unlike `println!`, a closed or broken stdout (a service without a console, a test that
//! stopped reading) never stops the agent: the line is dropped.

use std::fmt;
use std::io::Write;

/// Writes one line to stdout, flushed, ignoring write errors.
pub(crate) fn line(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Writes text as is (no newline added), flushed, ignoring write errors.
pub(crate) fn text(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// Writes one line to stderr, ignoring write errors.
pub(crate) fn err_line(args: fmt::Arguments<'_>) {
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
