//! Asking the person at the terminal. Prompts go to stderr so stdout stays clean for
//! `--json`; passwords are read from the terminal without echo (rpassword) or, with
//! `--password-stdin`, as one line of standard input.

use std::io::{BufRead, IsTerminal};

use zeroize::Zeroizing;

use crate::error::CliError;

/// Whether standard input is a terminal someone can type into.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Shows `prompt` on stderr and reads one line from standard input (without the line
/// ending). End of input reads as an empty line.
pub fn line(prompt: &str) -> Result<String, CliError> {
    eprint!("{prompt}");
    let mut s = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut s)
        .map_err(CliError::io("reading standard input"))?;
    Ok(s.trim_end_matches(['\r', '\n']).to_owned())
}

/// Asks a yes/no question; only `y` or `yes` is yes.
pub fn confirm(prompt: &str) -> Result<bool, CliError> {
    Ok(is_yes(&line(prompt)?))
}

/// Whether an answer means yes.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Reads the password as one line of `input` (`--password-stdin`).
pub fn password_from(input: &mut impl BufRead) -> Result<Zeroizing<String>, CliError> {
    let mut s = Zeroizing::new(String::new());
    input
        .read_line(&mut s)
        .map_err(CliError::io("reading the password from standard input"))?;
    let trimmed = Zeroizing::new(s.trim_end_matches(['\r', '\n']).to_owned());
    if trimmed.is_empty() {
        return Err(CliError::usage(
            "--password-stdin: standard input held no password (one line expected)",
        ));
    }
    Ok(trimmed)
}

/// Reads the password from standard input (`--password-stdin`).
pub fn password_stdin() -> Result<Zeroizing<String>, CliError> {
    password_from(&mut std::io::stdin().lock())
}

/// Asks for a password on the terminal without echo.
pub fn password(prompt: &str) -> Result<Zeroizing<String>, CliError> {
    let p = rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .map_err(|e| {
            CliError::usage(format!(
                "cannot read a password from the terminal ({e}); pipe it in with --password-stdin"
            ))
        })?;
    if p.is_empty() {
        return Err(CliError::usage("no password given"));
    }
    Ok(p)
}

/// Asks for a new password twice on the terminal.
pub fn new_password() -> Result<Zeroizing<String>, CliError> {
    let first = password("New password: ")?;
    let second = password("Repeat the password: ")?;
    if first != second {
        return Err(CliError::usage(
            "the two passwords differ; nothing was sent",
        ));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_password_is_the_first_line_without_its_ending() {
        let pw = password_from(&mut "hunter2 with spaces \r\nsecond".as_bytes()).unwrap();
        assert_eq!(pw.as_str(), "hunter2 with spaces ");
        assert!(password_from(&mut "".as_bytes()).is_err());
        assert!(password_from(&mut "\n".as_bytes()).is_err());
    }

    #[test]
    fn only_y_or_yes_is_yes() {
        for a in ["y", "Y", "yes", " YES "] {
            assert!(is_yes(a), "{a}");
        }
        for a in ["", "n", "no", "yep", "sure"] {
            assert!(!is_yes(a), "{a}");
        }
    }
}
