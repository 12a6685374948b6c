//! Hostile bytes never panic the handler, never execute anything, and are answered with
//! exactly one signed `denied`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use tether_proto::{EnvelopeSigner, KeyId, ManualClock, Stamp, UnixMillis};

use super::*;
use crate::executor::{Artifacts, RecordingExecutor};

const NOW: UnixMillis = UnixMillis(1_764_115_200_000);

struct Fixture {
    _dir: tempfile::TempDir,
    record: std::path::PathBuf,
    handler: Handler,
    agent: EnvelopeSigner,
    helper_keys: StaticKeys,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(NOW));
    let agent_key = SigningKey::from_bytes(&[9; 32]);
    let helper_key = SigningKey::from_bytes(&[10; 32]);
    let mut agent_keys = StaticKeys::new();
    agent_keys.insert(
        KeyId::for_ed25519(agent_key.verifying_key().as_bytes()),
        agent_key.verifying_key(),
    );
    let mut helper_keys = StaticKeys::new();
    helper_keys.insert(
        KeyId::for_ed25519(helper_key.verifying_key().as_bytes()),
        helper_key.verifying_key(),
    );
    let record = dir.path().join("record.jsonl");
    let executor = RecordingExecutor::new(
        record.clone(),
        Artifacts::new(dir.path().join("artifacts"), None),
        Arc::clone(&clock),
    );
    let handler = Handler::new(
        agent_keys,
        Arc::clone(&clock),
        Responder::new(helper_key, Arc::clone(&clock)),
        Arc::new(Ledger::open(dir.path()).unwrap()),
        Arc::new(executor),
        TaskTracker::new(),
    );
    Fixture {
        _dir: dir,
        record,
        handler,
        agent: EnvelopeSigner::new(agent_key),
        helper_keys,
    }
}

impl Fixture {
    fn valid_frame(&self) -> Vec<u8> {
        let req = HelperRequest {
            request_id: MessageId::from_random_bytes([1; 16]),
            opcode: Opcode::ExecReboot,
            params: json!({"delay_s": 30, "reason": "x"}),
            agent_sequence: 7,
            policy_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            command_message_id: MessageId::from_random_bytes([2; 16]),
            simulate: None,
        };
        let stamp = Stamp {
            iat: NOW,
            ttl: 60,
            seq: 7,
            message_id: req.request_id.clone(),
            trace_id: TraceId::from_random_bytes([3; 16]),
        };
        self.agent.seal(stamp, &req).unwrap()
    }

    /// Handles one line; returns the verified responses.
    fn answer(&self, line: &[u8]) -> Vec<HelperResponse> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut out = Vec::new();
        rt.block_on(self.handler.handle(line, &mut out)).unwrap();
        let clock = ManualClock::new(NOW);
        out.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                Verifier::new(&self.helper_keys, &clock)
                    .verify(l)
                    .unwrap()
                    .into_body()
                    .unwrap()
            })
            .collect()
    }

    fn executed(&self) -> bool {
        self.record.exists()
    }
}

fn assert_one_denial(f: &Fixture, line: &[u8]) {
    let answers = f.answer(line);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].status, HelperStatus::Denied, "{answers:?}");
    assert!(answers[0].error.is_some());
    assert!(!f.executed());
}

#[test]
fn the_unaltered_frame_is_executed() {
    let f = fixture();
    let answers = f.answer(&f.valid_frame());
    let statuses: Vec<_> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [HelperStatus::Executing, HelperStatus::Ok]);
    assert!(f.executed());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_are_denied(line in proptest::collection::vec(any::<u8>(), 0..600)) {
        let f = fixture();
        assert_one_denial(&f, &line);
    }

    #[test]
    fn any_one_byte_change_to_a_signed_frame_is_denied(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let f = fixture();
        let mut frame = f.valid_frame();
        let i = pos.index(frame.len());
        prop_assume!(frame[i] != byte && byte != b'\n');
        frame[i] = byte;
        assert_one_denial(&f, &frame);
    }

    #[test]
    fn a_truncated_signed_frame_is_denied(cut in any::<prop::sample::Index>()) {
        let f = fixture();
        let frame = f.valid_frame();
        let end = cut.index(frame.len());
        assert_one_denial(&f, &frame[..end]);
    }
}

const HASH_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const HASH_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

impl Fixture {
    /// A signed request with sequence `seq`.
    fn request(&self, seq: u64, opcode: Opcode, params: Value, policy_hash: &str) -> Vec<u8> {
        let req = HelperRequest {
            request_id: MessageId::from_random_bytes([u8::try_from(seq).unwrap(); 16]),
            opcode,
            params,
            agent_sequence: seq,
            policy_hash: policy_hash.into(),
            command_message_id: MessageId::from_random_bytes(
                [u8::try_from(seq).unwrap() ^ 0x80; 16],
            ),
            simulate: None,
        };
        let stamp = Stamp {
            iat: NOW,
            ttl: 60,
            seq,
            message_id: req.request_id.clone(),
            trace_id: TraceId::from_random_bytes([3; 16]),
        };
        self.agent.seal(stamp, &req).unwrap()
    }

    fn set_policy(&self, seq: u64, version: u64, hash: &str) -> Vec<HelperResponse> {
        self.answer(&self.request(
            seq,
            Opcode::SetPolicy,
            json!({"policy_version": version, "policy_hash": hash}),
            hash,
        ))
    }

    fn lock(&self, seq: u64, hash: &str) -> Vec<HelperResponse> {
        self.answer(&self.request(seq, Opcode::ExecLockScreen, json!({}), hash))
    }

    fn journal(&self) -> String {
        std::fs::read_to_string(self._dir.path().join(crate::state::files::EXECUTIONS))
            .unwrap_or_default()
    }
}

#[test]
fn a_stale_policy_hash_is_denied_and_journaled() {
    let f = fixture();
    let ok = f.set_policy(1, 3, HASH_A);
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].status, HelperStatus::Ok, "{ok:?}");
    assert_eq!(ok[0].result["policy_version"], 3);

    let stale = f.lock(2, HASH_B);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].status, HelperStatus::Denied);
    assert_eq!(
        stale[0].error,
        Some(tether_proto::ErrorCode::PolicyHashMismatch)
    );
    assert!(!f.executed(), "nothing ran");
    let journal = f.journal();
    assert!(
        journal.contains("\"event\":\"denied\"") && journal.contains("4004"),
        "{journal}"
    );

    let current: Vec<_> = f.lock(3, HASH_A).iter().map(|a| a.status).collect();
    assert_eq!(current, [HelperStatus::Executing, HelperStatus::Ok]);
    assert!(f.executed());
}

#[test]
fn set_policy_never_goes_back_and_is_sequenced_like_any_request() {
    let f = fixture();
    assert_eq!(f.set_policy(1, 5, HASH_A)[0].status, HelperStatus::Ok);
    // Idempotent at the same version and hash (the agent says it at every start).
    assert_eq!(f.set_policy(2, 5, HASH_A)[0].status, HelperStatus::Ok);
    for (seq, version, hash) in [(3, 4, HASH_B), (4, 5, HASH_B)] {
        let r = f.set_policy(seq, version, hash);
        assert_eq!(r[0].status, HelperStatus::Denied, "{r:?}");
        assert_eq!(
            r[0].error,
            Some(tether_proto::ErrorCode::PolicyVersionRollback)
        );
    }
    // A replayed SET_POLICY (an old sequence) is refused before it is looked at.
    let replay = f.set_policy(2, 6, HASH_B);
    assert_eq!(
        replay[0].error,
        Some(tether_proto::ErrorCode::SequenceReplay)
    );
    // Still version 5 with hash A: commands naming B are refused.
    assert_eq!(
        f.lock(10, HASH_B)[0].error,
        Some(tether_proto::ErrorCode::PolicyHashMismatch)
    );
    assert_eq!(f.set_policy(11, 6, HASH_B)[0].status, HelperStatus::Ok);
    assert_eq!(f.lock(12, HASH_B).last().unwrap().status, HelperStatus::Ok);
}

#[test]
fn set_policy_params_must_name_the_requests_hash() {
    let f = fixture();
    let r = f.answer(&f.request(
        1,
        Opcode::SetPolicy,
        json!({"policy_version": 1, "policy_hash": HASH_A}),
        HASH_B,
    ));
    assert_eq!(r[0].status, HelperStatus::Denied);
    assert_eq!(r[0].error, Some(tether_proto::ErrorCode::InvalidParams));
    // Nothing was taken: any hash still passes.
    assert_eq!(f.lock(2, HASH_B).last().unwrap().status, HelperStatus::Ok);
}
