//! The `tether` CLI binary, run the way a user runs it, with a profile of its own.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::{PASSWORD, Server, binary, write_owner_key_file};

/// One finished run of `tether`.
#[derive(Debug)]
pub struct Run {
    /// The arguments, joined (for messages).
    pub args: String,
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code.
    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "tether {}: expected exit {code}: {self:#?}",
            self.args
        );
        self
    }

    /// Asserts success.
    #[track_caller]
    pub fn ok(self) -> Self {
        self.code(0)
    }

    /// Standard output as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("tether {}: stdout is not JSON ({e}): {self:#?}", self.args))
    }
}

/// `tether` with a profile directory of its own (removed with it).
#[derive(Debug)]
pub struct Tether {
    /// The profile directory (`--profile-dir`).
    pub profile: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tether {
    /// A new, empty profile: not pointed at any server, no account, no key (as on a
    /// machine where `tether` was never used).
    pub fn fresh() -> Tether {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        Tether {
            profile: dir.path().join("profile"),
            _dir: dir,
        }
    }

    /// `tether --profile-dir <profile> <args>`, with piped stdio and no profile or
    /// server taken from the environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary("tether"));
        c.arg("--profile-dir")
            .arg(&self.profile)
            .args(args)
            .env_remove("TETHER_SERVER")
            .env_remove("TETHER_PROFILE_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `tether <args>` with `stdin` written to its standard input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        use std::io::Write;
        let mut child = self
            .command(args)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning tether: {e}"));
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .unwrap_or_else(|e| panic!("writing tether's stdin: {e}"));
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for tether: {e}"));
        Run {
            args: args.join(" "),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `tether <args>` with empty standard input.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    /// A new profile logged in to `server` as `email` (registered by
    /// [`crate::register_user`]), holding that user's owner key so `tether cmd` signs
    /// with the key the user's PCs pin.
    pub fn login(server: &Server, email: &str) -> Tether {
        let t = Tether::fresh();
        let ca = server.ca_file.to_string_lossy().into_owned();
        t.run_with_stdin(
            &[
                "--server",
                &server.url,
                "--ca-file",
                &ca,
                "login",
                "--email",
                email,
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        )
        .ok();
        write_owner_key_file(&t.profile, email);
        t
    }
}
