//! The helper's durable memory: the agent_sequence high-water mark and how every command
//! ended.
//!
//! `agent-sequence` holds the last accepted `agent_sequence` as a decimal line, replaced
//! atomically (temporary file, fsync, rename, directory fsync) *before* the request it
//! admits is acted on, so a replay is refused across restarts and SIGKILL.
//!
//! `executions.jsonl` is an append-only journal, one JSON object per line, each fsynced
//! before the helper acts on it:
//!
//! * `{"event":"started","command_message_id","request_id","kernel_exec_id","fingerprint","at"}`
//!   — written before the executor runs;
//! * `{"event":"finished","command_message_id","kernel_exec_id","status","error"?,"result","at"}`
//!   — written when it returns, before the final response is sent;
//! * `{"event":"denied","command_message_id","request_id","fingerprint","error","result","at"}`
//!   — a verified request refused for its params or opcode.
//!
//! Replaying the journal at start rebuilds, per `command_message_id`, the number of
//! executions and the final answer. A `started` with no `finished` means the helper
//! stopped while it ran: the outcome is unknown, so the command ends `failed` 6001 with
//! `"interrupted": true` and is never run again. A torn last line (a crash mid-write) is
//! skipped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tether_proto::helper::HelperStatus;
use tether_proto::{ErrorCode, MessageId, ProtoError, UnixMillis};
use tokio::sync::watch;

use crate::error::HelperError;
use crate::platform;
use crate::policy::PolicyMark;
use crate::state::files;

/// How many times one command may be executed: the first try and the agent's one
/// automatic retry after a kernel failure.
pub(crate) const MAX_EXECUTIONS: u32 = 2;

/// How a command ended: what its final `helper_response` said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FinalAnswer {
    pub(crate) status: HelperStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kernel_exec_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorCode>,
    pub(crate) result: Value,
}

/// What the helper knows of a request before asking the ledger about its command.
#[derive(Debug, Clone)]
pub(crate) struct RequestFacts {
    pub(crate) command_message_id: MessageId,
    pub(crate) request_id: MessageId,
    /// SHA-256 of the canonical `{opcode, params, simulate}`: a command asked for again
    /// must ask for the same thing.
    pub(crate) fingerprint: String,
}

/// What to do with a request, decided atomically against every other request.
#[derive(Debug)]
pub(crate) enum Begin<T> {
    /// Run it now under this execution id (the `started` entry is on disk); `done`
    /// carries the answer once [`Ledger::finish`] records it.
    Execute {
        kernel_exec_id: String,
        done: watch::Receiver<Option<FinalAnswer>>,
        checked: T,
    },
    /// The command is running for an earlier request: wait for its answer.
    Wait {
        kernel_exec_id: String,
        done: watch::Receiver<Option<FinalAnswer>>,
    },
    /// The command already ended: answer with its final response.
    Answer(FinalAnswer),
    /// Refused now (the refusal is on disk when it is final for the command).
    Refuse(FinalAnswer),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Entry {
    Started {
        command_message_id: MessageId,
        request_id: MessageId,
        kernel_exec_id: String,
        fingerprint: String,
        at: UnixMillis,
    },
    Finished {
        command_message_id: MessageId,
        kernel_exec_id: String,
        status: HelperStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ErrorCode>,
        result: Value,
        at: UnixMillis,
    },
    Denied {
        command_message_id: MessageId,
        request_id: MessageId,
        fingerprint: String,
        error: ErrorCode,
        result: Value,
        at: UnixMillis,
    },
}

#[derive(Debug)]
enum Phase {
    Running {
        kernel_exec_id: String,
        done: watch::Sender<Option<FinalAnswer>>,
    },
    Ended(FinalAnswer),
}

#[derive(Debug)]
struct Command {
    fingerprint: String,
    executions: u32,
    interrupted: bool,
    phase: Phase,
}

impl Command {
    /// Whether a new request for this command may execute it again.
    fn may_retry(&self) -> bool {
        matches!(&self.phase, Phase::Ended(a) if a.status == HelperStatus::Failed)
            && self.executions < MAX_EXECUTIONS
            && !self.interrupted
    }
}

#[derive(Debug)]
struct Book {
    path: PathBuf,
    journal: File,
    commands: HashMap<MessageId, Command>,
    next_exec: u64,
}

/// The sequence mark and the execution journal of one state directory.
#[derive(Debug)]
pub(crate) struct Ledger {
    seq_path: PathBuf,
    last_seq: Mutex<Option<u64>>,
    book: Mutex<Book>,
    /// The agent's policy in force (`policy.json`, see `crate::policy`).
    policy: PolicyMark,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something ever did, the data is still
    // consistent (every change is made after its journal write), so carry on.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ledger {
    /// Opens the ledger of a state directory, replaying its journal. Blocking.
    pub(crate) fn open(state_dir: &Path) -> Result<Self, HelperError> {
        let seq_path = state_dir.join(files::AGENT_SEQUENCE);
        let last_seq = read_sequence(&seq_path)?;
        let path = state_dir.join(files::EXECUTIONS);
        let mut journal =
            platform::open_append(&path, 0o600).map_err(|e| HelperError::io(&path, e))?;
        let mut text = Vec::new();
        journal
            .seek(SeekFrom::Start(0))
            .and_then(|_| journal.read_to_end(&mut text))
            .map_err(|e| HelperError::io(&path, e))?;
        // A torn last line (crash mid-append) is ended here, so it stays one bad line that
        // replay skips instead of gluing itself to the next entry.
        if text.last().is_some_and(|b| *b != b'\n') {
            journal
                .write_all(b"\n")
                .and_then(|()| journal.sync_data())
                .map_err(|e| HelperError::io(&path, e))?;
        }
        let (commands, next_exec) = replay(&path, &text);
        Ok(Self {
            policy: PolicyMark::open(state_dir)?,
            seq_path,
            last_seq: Mutex::new(last_seq),
            book: Mutex::new(Book {
                path,
                journal,
                commands,
                next_exec,
            }),
        })
    }

    /// The agent's policy in force, as it told us.
    pub(crate) fn policy(&self) -> &PolicyMark {
        &self.policy
    }

    /// The last accepted agent_sequence.
    pub(crate) fn last_sequence(&self) -> Option<u64> {
        *lock(&self.last_seq)
    }

    /// Accepts `seq` if it is above the last accepted one, persisting the new mark before
    /// returning. Blocking.
    pub(crate) fn accept_sequence(&self, seq: u64) -> Result<(), HelperError> {
        let mut last = lock(&self.last_seq);
        if let Some(l) = *last
            && seq <= l
        {
            return Err(ProtoError::SequenceReplay { seq, last: l }.into());
        }
        platform::write_atomic(&self.seq_path, format!("{seq}\n").as_bytes(), 0o600)
            .map_err(|e| HelperError::io(&self.seq_path, e))?;
        *last = Some(seq);
        Ok(())
    }

    /// Decides what to do with a verified request whose sequence was accepted. `precheck`
    /// is the outcome of the params and opcode checks (what passed is handed back with
    /// `Execute`): a refusal there becomes the command's final answer unless the command
    /// already has one. Blocking.
    pub(crate) fn begin<T>(
        &self,
        req: &RequestFacts,
        precheck: Result<T, HelperError>,
        at: UnixMillis,
    ) -> Result<Begin<T>, HelperError> {
        let mut book = lock(&self.book);
        if let Some(c) = book.commands.get(&req.command_message_id) {
            if c.fingerprint != req.fingerprint {
                let e = HelperError::CommandMismatch(req.command_message_id.clone());
                return Ok(Begin::Refuse(refusal(&e)));
            }
            match &c.phase {
                Phase::Running {
                    kernel_exec_id,
                    done,
                } => {
                    return Ok(Begin::Wait {
                        kernel_exec_id: kernel_exec_id.clone(),
                        done: done.subscribe(),
                    });
                }
                Phase::Ended(answer) if !c.may_retry() => return Ok(Begin::Answer(answer.clone())),
                Phase::Ended(_) => {}
            }
        }
        let checked = match precheck {
            Ok(checked) => checked,
            Err(e) => return book.refuse(req, &e, at),
        };
        let kernel_exec_id = format!("kx_{}", book.next_exec);
        book.append(&Entry::Started {
            command_message_id: req.command_message_id.clone(),
            request_id: req.request_id.clone(),
            kernel_exec_id: kernel_exec_id.clone(),
            fingerprint: req.fingerprint.clone(),
            at,
        })?;
        book.next_exec = book.next_exec.saturating_add(1);
        let (done, receiver) = watch::channel(None);
        let phase = Phase::Running {
            kernel_exec_id: kernel_exec_id.clone(),
            done,
        };
        match book.commands.get_mut(&req.command_message_id) {
            Some(c) => {
                c.executions = c.executions.saturating_add(1);
                c.phase = phase;
            }
            None => {
                book.commands.insert(
                    req.command_message_id.clone(),
                    Command {
                        fingerprint: req.fingerprint.clone(),
                        executions: 1,
                        interrupted: false,
                        phase,
                    },
                );
            }
        }
        Ok(Begin::Execute {
            kernel_exec_id,
            done: receiver,
            checked,
        })
    }

    /// Records how an execution ended and wakes everyone waiting for it. The answer is
    /// kept in memory even if the journal write fails (then a restart sees the execution
    /// as interrupted, which never runs it again). Blocking.
    pub(crate) fn finish(&self, command: &MessageId, answer: FinalAnswer, at: UnixMillis) {
        let mut book = lock(&self.book);
        let kernel_exec_id = answer.kernel_exec_id.clone().unwrap_or_default();
        let entry = Entry::Finished {
            command_message_id: command.clone(),
            kernel_exec_id,
            status: answer.status,
            error: answer.error,
            result: answer.result.clone(),
            at,
        };
        if let Err(e) = book.append(&entry) {
            tracing::error!(command_message_id = %command, error = %e, "cannot journal the end of an execution");
        }
        if let Some(c) = book.commands.get_mut(command) {
            let old = std::mem::replace(&mut c.phase, Phase::Ended(answer.clone()));
            if let Phase::Running { done, .. } = old {
                done.send_replace(Some(answer));
            }
        }
    }
}

impl Book {
    /// Records a refusal of the params or opcode as the command's final answer.
    fn refuse<T>(
        &mut self,
        req: &RequestFacts,
        e: &HelperError,
        at: UnixMillis,
    ) -> Result<Begin<T>, HelperError> {
        let answer = refusal(e);
        self.append(&Entry::Denied {
            command_message_id: req.command_message_id.clone(),
            request_id: req.request_id.clone(),
            fingerprint: req.fingerprint.clone(),
            error: e.code(),
            result: answer.result.clone(),
            at,
        })?;
        let executions = self
            .commands
            .get(&req.command_message_id)
            .map_or(0, |c| c.executions);
        self.commands.insert(
            req.command_message_id.clone(),
            Command {
                fingerprint: req.fingerprint.clone(),
                executions,
                interrupted: false,
                phase: Phase::Ended(answer.clone()),
            },
        );
        Ok(Begin::Refuse(answer))
    }

    fn append(&mut self, entry: &Entry) -> Result<(), HelperError> {
        let mut line = serde_json::to_vec(entry).map_err(|e| HelperError::CorruptState {
            path: self.path.clone(),
            reason: format!("cannot encode a journal entry: {e}"),
        })?;
        line.push(b'\n');
        self.journal
            .write_all(&line)
            .and_then(|()| self.journal.sync_data())
            .map_err(|e| HelperError::io(&self.path, e))
    }
}

/// The answer to a request refused after it was verified.
pub(crate) fn refusal(e: &HelperError) -> FinalAnswer {
    FinalAnswer {
        status: HelperStatus::Denied,
        kernel_exec_id: None,
        error: Some(e.code()),
        result: json!({ "message": e.to_string() }),
    }
}

fn read_sequence(path: &Path) -> Result<Option<u64>, HelperError> {
    match std::fs::read_to_string(path) {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            // A mark that cannot be read must not silently reset to "accept anything".
            .map_err(|e| HelperError::CorruptState {
                path: path.to_path_buf(),
                reason: format!("not a sequence number ({e}); fix or remove it by hand"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HelperError::io(path, e)),
    }
}

fn exec_number(kernel_exec_id: &str) -> Option<u64> {
    kernel_exec_id.strip_prefix("kx_")?.parse().ok()
}

fn replay(path: &Path, text: &[u8]) -> (HashMap<MessageId, Command>, u64) {
    let mut commands: HashMap<MessageId, Command> = HashMap::new();
    let mut highest = 0u64;
    for (n, line) in text.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let entry: Entry = match serde_json::from_slice(line) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(path = %path.display(), line = n.saturating_add(1), error = %e, "skipping an unreadable journal line");
                continue;
            }
        };
        match entry {
            Entry::Started {
                command_message_id,
                kernel_exec_id,
                fingerprint,
                ..
            } => {
                highest = highest.max(exec_number(&kernel_exec_id).unwrap_or(0));
                let interrupted = interrupted(&kernel_exec_id);
                let c = commands.entry(command_message_id).or_insert(Command {
                    fingerprint,
                    executions: 0,
                    interrupted: false,
                    phase: Phase::Ended(interrupted.clone()),
                });
                c.executions = c.executions.saturating_add(1);
                // Until its `finished` line, an execution counts as interrupted.
                c.interrupted = true;
                c.phase = Phase::Ended(interrupted);
            }
            Entry::Finished {
                command_message_id,
                kernel_exec_id,
                status,
                error,
                result,
                ..
            } => {
                if let Some(c) = commands.get_mut(&command_message_id) {
                    c.interrupted = false;
                    c.phase = Phase::Ended(FinalAnswer {
                        status,
                        kernel_exec_id: Some(kernel_exec_id),
                        error,
                        result,
                    });
                }
            }
            Entry::Denied {
                command_message_id,
                fingerprint,
                error,
                result,
                ..
            } => {
                let c = commands.entry(command_message_id).or_insert(Command {
                    fingerprint,
                    executions: 0,
                    interrupted: false,
                    phase: Phase::Ended(FinalAnswer {
                        status: HelperStatus::Denied,
                        kernel_exec_id: None,
                        error: Some(error),
                        result: result.clone(),
                    }),
                });
                c.phase = Phase::Ended(FinalAnswer {
                    status: HelperStatus::Denied,
                    kernel_exec_id: None,
                    error: Some(error),
                    result,
                });
            }
        }
    }
    (commands, highest.saturating_add(1))
}

fn interrupted(kernel_exec_id: &str) -> FinalAnswer {
    FinalAnswer {
        status: HelperStatus::Failed,
        kernel_exec_id: Some(kernel_exec_id.to_owned()),
        error: Some(ErrorCode::KernelFailure),
        result: json!({
            "interrupted": true,
            "message": "the helper stopped while this ran; the outcome is unknown and it is not run again",
        }),
    }
}

#[cfg(test)]
mod tests;
