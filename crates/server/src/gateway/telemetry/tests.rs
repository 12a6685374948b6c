//! Admission while the analytics are behind, and the refusal tally: which refusals are
//! audited on their own, and what is folded.

use serde_json::json;
use tether_proto::ErrorCode;
use tokio::time::Instant;

use super::{
    FRAME_REJECTED, REFUSAL_AUDIT_EVERY, RefusalTally, TELEMETRY_REJECTED, TelemetryBatcher,
    admits, backlog_samples,
};
use crate::events::TELEMETRY_ENTRY_LIMIT;

fn detail(n: u32) -> serde_json::Value {
    json!({ "n": n })
}

#[test]
fn the_first_of_a_kind_is_audited_and_the_rest_folded_for_a_while() {
    let mut t = RefusalTally::default();
    let start = Instant::now();
    let later = start + REFUSAL_AUDIT_EVERY;
    let expired = ErrorCode::TtlExpired;
    assert_eq!(
        t.refused(TELEMETRY_REJECTED, expired, &detail(1), start),
        Some(0)
    );
    for n in 2..=5 {
        assert_eq!(
            t.refused(TELEMETRY_REJECTED, expired, &detail(n), start),
            None
        );
    }
    // Another code, or another action, is a kind of its own.
    assert_eq!(
        t.refused(
            TELEMETRY_REJECTED,
            ErrorCode::SignatureInvalid,
            &detail(6),
            start
        ),
        Some(0)
    );
    assert_eq!(
        t.refused(FRAME_REJECTED, expired, &detail(7), start),
        Some(0)
    );

    // After the interval the next one is audited, standing for the four counted.
    assert_eq!(
        t.refused(TELEMETRY_REJECTED, expired, &detail(8), later),
        Some(4)
    );
    assert_eq!(
        t.refused(TELEMETRY_REJECTED, expired, &detail(9), later),
        None
    );
    assert_eq!(
        t.refused(TELEMETRY_REJECTED, expired, &detail(10), later),
        None
    );

    // The session's end: the last counted one, standing for one more; nothing for the
    // kinds with nothing counted; and the tally is empty after.
    let left = t.take_unrecorded();
    assert_eq!(left, vec![(TELEMETRY_REJECTED, detail(10), 1)]);
    assert!(t.take_unrecorded().is_empty());
}

#[test]
fn samples_are_refused_from_the_limit_on() {
    assert!(admits(0, 50_000));
    assert!(admits(49_999, 50_000));
    assert!(!admits(50_000, 50_000));
    assert!(!admits(u64::MAX, 1));
}

#[test]
fn the_backlog_counts_samples_and_is_full_near_the_streams_cap_in_entries() {
    // Nothing appended yet: an entry stands for one sample.
    let batcher = TelemetryBatcher::default();
    assert_eq!(backlog_samples(0, batcher.samples_in(0), 50_000), 0);
    assert_eq!(backlog_samples(700, batcher.samples_in(700), 50_000), 700);
    assert_eq!(batcher.backlog_samples(), 0);
    // However few samples the entries hold, the stream's cap in entries is not reached.
    let at_cap = TELEMETRY_ENTRY_LIMIT;
    assert!(!admits(
        backlog_samples(at_cap, batcher.samples_in(at_cap), 50_000),
        50_000
    ));
    let under = TELEMETRY_ENTRY_LIMIT - 1;
    assert!(admits(
        backlog_samples(under, batcher.samples_in(under), 50_000),
        50_000
    ));
}
