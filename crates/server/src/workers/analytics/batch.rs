//! The analytics worker's fast path: a whole read of records in one store transaction
//! (`Store::insert_telemetry_events`), then the alert rules record by record; the live
//! events are handed back to be published (side by side: the bus commits concurrent
//! appends as one) while the read is acknowledged, or before the first alert the rules
//! raise, so that a client sees the samples before the alert they caused.
//!
//! Same outcome as one by one ([`AnalyticsWorker::record`]): records are scored in
//! order against their device's baseline; a redelivered record (its message id stored
//! already) is not published and its device's baseline is rebuilt from the store next
//! time, so it is not counted twice. Anything unusual — a device whose baseline cannot
//! be rebuilt, a batch the store refuses — hands the whole read back to the one-by-one
//! path, which sorts out which records fail and how.

use std::collections::{HashMap, HashSet};

use tether_bus::Entry;

use super::{AnalyticsWorker, Failure, Tracked, live_telemetry, new_event, publish_all, sample_of};
use crate::analytics::Sample;
use crate::events::{LiveEvent, TelemetryRecord};

/// One record, scored.
struct Scored<'a> {
    entry: &'a Entry,
    record: &'a TelemetryRecord,
    sample: Sample,
    assessment: crate::analytics::Assessment,
}

impl AnalyticsWorker {
    /// Records `records` together; pushes the ids of the entries that may be
    /// acknowledged onto `done`, and the live events of the records stored onto `live`
    /// (the caller publishes them while it acknowledges). `false`: nothing was done, go
    /// one by one.
    pub(super) async fn record_batch(
        &mut self,
        records: &[(&Entry, TelemetryRecord)],
        done: &mut Vec<String>,
        live: &mut Vec<LiveEvent>,
    ) -> bool {
        let state = self.state.clone();
        let started = tokio::time::Instant::now();
        // Every device's baseline first, so that a failure leaves them all as they were;
        // those not in memory are rebuilt together, in one read.
        let mut tracked: HashMap<String, Tracked> = HashMap::new();
        let mut missing: Vec<&str> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::with_capacity(records.len());
        for (_, record) in records {
            let device = record.device_id.as_str();
            if !seen.insert(device) {
                continue;
            }
            match self.devices.remove(device) {
                Some(t) => {
                    tracked.insert(device.to_owned(), t);
                }
                None => missing.push(device),
            }
        }
        if !missing.is_empty() {
            match self.rebuild_all(&missing).await {
                Ok(rebuilt) => tracked.extend(rebuilt),
                Err(_) => {
                    self.devices.extend(tracked);
                    return false;
                }
            }
        }
        let rebuilt = missing.len();
        let rebuilt_at = tokio::time::Instant::now();
        let mut scored = Vec::with_capacity(records.len());
        let mut events = Vec::with_capacity(records.len());
        for (entry, record) in records {
            let Some(t) = tracked.get_mut(&record.device_id) else {
                return false;
            };
            let sample = sample_of(record);
            let assessment = t.model.score(&sample);
            t.model.update(&sample);
            let Ok(body) = serde_json::to_value(&record.body) else {
                // Cannot happen for a validated body; the slow path logs it.
                return false;
            };
            // The body goes to the store's event, and from it to the live event after
            // (one copy of each body, not three).
            events.push(new_event(record, &sample, assessment.risk, body));
            scored.push(Scored {
                entry,
                record,
                sample,
                assessment,
            });
        }
        let inserted = match self.store.insert_telemetry_events(&events).await {
            Ok(v) if v.len() == scored.len() => v,
            outcome => {
                if let Err(e) = outcome {
                    tracing::warn!(records = events.len(), error = %e, "storing a telemetry read together failed; going one by one");
                }
                // The baselines were advanced for records that were not stored: dropped,
                // rebuilt from the store when the slow path needs them.
                return false;
            }
        };
        let stored_at = tokio::time::Instant::now();
        live.extend(
            events
                .into_iter()
                .zip(&scored)
                .zip(&inserted)
                .filter(|(_, new)| **new)
                .map(|((event, s), _)| live_telemetry(s.record, event.body, s.assessment.risk)),
        );
        crate::prom::telemetry_stored(inserted.iter().filter(|new| **new).count());

        // The rules, in order. A device whose alert could not be raised is left pending
        // from that record on, and its baseline rebuilt next time.
        let mut failed: Vec<&str> = Vec::new();
        for (s, new) in scored.iter().zip(&inserted) {
            let device = s.record.device_id.as_str();
            if !new {
                tracing::info!(message = %s.record.message_id, "telemetry already stored (redelivery of a message id)");
                failed.push(device);
            }
            if failed.contains(&device) && *new {
                continue;
            }
            let Some(t) = tracked.get_mut(device) else {
                continue;
            };
            let mut rules = t.rules.clone();
            let mut ok = true;
            for firing in rules.observe(&self.thresholds, &s.sample, &s.assessment) {
                // An alert goes out after the live events of the samples before it (and
                // of the whole batch, as when they were all published first).
                if !live.is_empty() {
                    publish_all(&state, std::mem::take(live)).await;
                }
                let raised = self.raise(device, &firing).await;
                if let Err(e) = raised {
                    match Failure::from(e) {
                        Failure::Permanent(why) => {
                            tracing::warn!(entry = %s.entry.id, %device, %why, "telemetry entry dropped");
                        }
                        Failure::Transient(why) => {
                            tracing::warn!(entry = %s.entry.id, %device, %why, "telemetry entry left pending for a retry");
                            ok = false;
                        }
                    }
                    break;
                }
            }
            if ok {
                t.rules = rules;
                done.push(s.entry.id.clone());
            } else {
                failed.push(device);
            }
        }
        let ms = |from: tokio::time::Instant, to: tokio::time::Instant| {
            to.duration_since(from).as_secs_f64() * 1e3
        };
        tracing::debug!(
            records = records.len(),
            rebuilt,
            rebuild_ms = ms(started, rebuilt_at),
            store_ms = ms(rebuilt_at, stored_at),
            rules_ms = ms(stored_at, tokio::time::Instant::now()),
            "telemetry batch recorded"
        );
        let now = state.now();
        for (device, mut t) in tracked {
            if failed.contains(&device.as_str()) {
                continue;
            }
            t.last_used = now;
            self.devices.insert(device, t);
        }
        true
    }
}
