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
            opcode: tether_proto::helper::Opcode::ExecReboot,
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
