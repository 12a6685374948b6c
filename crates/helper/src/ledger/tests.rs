#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;

fn id(n: u8) -> MessageId {
    MessageId::from_random_bytes([n; 16])
}

fn facts(cmd: u8, req: u8) -> RequestFacts {
    RequestFacts {
        command_message_id: id(cmd),
        request_id: id(req),
        fingerprint: "fp".into(),
    }
}

fn ok(kx: &str) -> FinalAnswer {
    FinalAnswer {
        status: HelperStatus::Ok,
        kernel_exec_id: Some(kx.into()),
        error: None,
        result: json!({"done": true}),
    }
}

fn failed(kx: &str) -> FinalAnswer {
    FinalAnswer {
        status: HelperStatus::Failed,
        kernel_exec_id: Some(kx.into()),
        error: Some(ErrorCode::KernelFailure),
        result: json!({}),
    }
}

fn execute(b: Begin<()>) -> String {
    match b {
        Begin::Execute { kernel_exec_id, .. } => kernel_exec_id,
        other => panic!("expected Execute, got {other:?}"),
    }
}

const T: UnixMillis = UnixMillis(1_764_000_000_000);

#[test]
fn the_sequence_mark_only_rises_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path()).unwrap();
    assert_eq!(l.last_sequence(), None);
    l.accept_sequence(0).unwrap();
    l.accept_sequence(5).unwrap();
    let e = l.accept_sequence(5).unwrap_err();
    assert_eq!(e.code(), ErrorCode::SequenceReplay);
    assert_eq!(
        l.accept_sequence(4).unwrap_err().code(),
        ErrorCode::SequenceReplay
    );
    drop(l);
    let l = Ledger::open(dir.path()).unwrap();
    assert_eq!(l.last_sequence(), Some(5));
    assert_eq!(
        l.accept_sequence(5).unwrap_err().code(),
        ErrorCode::SequenceReplay
    );
    l.accept_sequence(6).unwrap();
}

#[test]
fn a_corrupt_sequence_mark_stops_the_helper_instead_of_resetting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(files::AGENT_SEQUENCE), "seven\n").unwrap();
    assert!(matches!(
        Ledger::open(dir.path()),
        Err(HelperError::CorruptState { .. })
    ));
}

#[test]
fn an_ended_command_is_answered_from_the_ledger_also_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path()).unwrap();
    let kx = execute(l.begin(&facts(1, 1), Ok(()), T).unwrap());
    assert_eq!(kx, "kx_1");
    l.finish(&id(1), ok(&kx), T);
    match l.begin(&facts(1, 2), Ok(()), T).unwrap() {
        Begin::Answer(a) => assert_eq!(a, ok("kx_1")),
        other => panic!("{other:?}"),
    }
    drop(l);
    let l = Ledger::open(dir.path()).unwrap();
    match l.begin(&facts(1, 3), Ok(()), T).unwrap() {
        Begin::Answer(a) => assert_eq!(a, ok("kx_1")),
        other => panic!("{other:?}"),
    }
    // Execution ids keep counting after a restart.
    assert_eq!(execute(l.begin(&facts(2, 4), Ok(()), T).unwrap()), "kx_2");
}

#[test]
fn a_failure_is_retried_once_then_answered() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path()).unwrap();
    let kx1 = execute(l.begin(&facts(1, 1), Ok(()), T).unwrap());
    l.finish(&id(1), failed(&kx1), T);
    let kx2 = execute(l.begin(&facts(1, 2), Ok(()), T).unwrap());
    assert_ne!(kx1, kx2);
    l.finish(&id(1), failed(&kx2), T);
    match l.begin(&facts(1, 3), Ok(()), T).unwrap() {
        Begin::Answer(a) => assert_eq!(a, failed(&kx2)),
        other => panic!("{other:?}"),
    }
    drop(l);
    let l = Ledger::open(dir.path()).unwrap();
    assert!(matches!(
        l.begin(&facts(1, 4), Ok(()), T).unwrap(),
        Begin::Answer(_)
    ));
}

#[test]
fn a_running_command_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path()).unwrap();
    let kx = execute(l.begin(&facts(1, 1), Ok(()), T).unwrap());
    let Begin::Wait {
        kernel_exec_id,
        done,
    } = l.begin(&facts(1, 2), Ok(()), T).unwrap()
    else {
        panic!("expected Wait")
    };
    assert_eq!(kernel_exec_id, kx);
    assert_eq!(*done.borrow(), None);
    l.finish(&id(1), ok(&kx), T);
    assert_eq!(*done.borrow(), Some(ok(&kx)));
}

#[test]
fn an_execution_cut_off_by_a_crash_is_never_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path()).unwrap();
    let kx = execute(l.begin(&facts(1, 1), Ok(()), T).unwrap());
    drop(l);
    // A torn entry after it, as a SIGKILL mid-write leaves.
    let path = dir.path().join(files::EXECUTIONS);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(br#"{"event":"finished","command_mes"#).unwrap();
    drop(f);
    let l = Ledger::open(dir.path()).unwrap();
    match l.begin(&facts(1, 2), Ok(()), T).unwrap() {
        Begin::Answer(a) => {
            assert_eq!(a.status, HelperStatus::Failed);
            assert_eq!(a.kernel_exec_id.as_deref(), Some(kx.as_str()));
            assert_eq!(a.result["interrupted"], true);
        }
        other => panic!("{other:?}"),
    }
    // The torn line did not swallow the next entry.
    let kx2 = execute(l.begin(&facts(2, 3), Ok(()), T).unwrap());
    l.finish(&id(2), ok(&kx2), T);
    drop(l);
    let l = Ledger::open(dir.path()).unwrap();
    assert!(matches!(l.begin(&facts(2, 4), Ok(()), T).unwrap(), Begin::Answer(a) if a == ok(&kx2)));
}

#[test]
fn other_content_under_a_known_command_is_refused_and_refusals_are_final() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path()).unwrap();
    let e = HelperError::OpcodeNotAllowed {
        opcode: "MEMORY_DUMP",
        reason: "no".into(),
    };
    match l.begin::<()>(&facts(1, 1), Err(e), T).unwrap() {
        Begin::Refuse(a) => assert_eq!(a.error, Some(ErrorCode::OpcodeNotAllowed)),
        other => panic!("{other:?}"),
    }
    // Asked again with the same content: the stored refusal, nothing executed.
    assert!(
        matches!(l.begin(&facts(1, 2), Ok(()), T).unwrap(), Begin::Answer(a) if a.error == Some(ErrorCode::OpcodeNotAllowed))
    );
    let mut other = facts(1, 3);
    other.fingerprint = "something else".into();
    match l.begin(&other, Ok(()), T).unwrap() {
        Begin::Refuse(a) => assert_eq!(a.error, Some(ErrorCode::DuplicateMessage)),
        other => panic!("{other:?}"),
    }
    drop(l);
    let l = Ledger::open(dir.path()).unwrap();
    assert!(
        matches!(l.begin(&facts(1, 4), Ok(()), T).unwrap(), Begin::Answer(a) if a.error == Some(ErrorCode::OpcodeNotAllowed))
    );
}
