//! Reading the audit trail back: which events, in which order, and which device an event
//! concerns.

use serde_json::Value;
use tether_proto::UnixMillis;

/// Which audit events to read. Every filter that is set must match; `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only events by this actor (exact).
    pub actor: Option<String>,
    /// Only events concerning this device (their `device_id`, exact).
    pub device_id: Option<String>,
    /// Only events whose action is this one or starts with it followed by `.`: `command`
    /// matches `command` and `command.queued`, not `commands` nor `command_x`.
    pub action: Option<String>,
    /// Only events with this outcome (exact).
    pub outcome: Option<String>,
    /// Only events at or after this time.
    pub since: Option<UnixMillis>,
    /// Only events before this time.
    pub until: Option<UnixMillis>,
    /// Only events with a sequence number below this one (paging newest first).
    pub before_seq: Option<u64>,
    /// Only events with a sequence number above this one (paging oldest first).
    pub after_seq: Option<u64>,
}

/// The order audit events are read in, by sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOrder {
    /// Highest `seq` first.
    NewestFirst,
    /// Lowest `seq` first.
    OldestFirst,
}

/// The longest device id an audit event records (the column's width).
pub const MAX_AUDIT_DEVICE_ID: usize = 255;

/// The device an audit event concerns, by the rule the audit trail uses (and migration 6
/// applied to older events): its target when that is a device id (`dev_…`), else the
/// `device_id` member of its detail when that is one. Ids longer than
/// [`MAX_AUDIT_DEVICE_ID`] are not recorded.
pub fn concerned_device(target: Option<&str>, detail: &Value) -> Option<String> {
    let is_device = |s: &&str| s.starts_with("dev_") && s.len() <= MAX_AUDIT_DEVICE_ID;
    target
        .filter(is_device)
        .or_else(|| {
            detail
                .get("device_id")
                .and_then(Value::as_str)
                .filter(is_device)
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::concerned_device;

    #[test]
    fn the_target_wins_then_the_detail() {
        let d = json!({"device_id": "dev_b"});
        assert_eq!(
            concerned_device(Some("dev_a"), &d).as_deref(),
            Some("dev_a")
        );
        assert_eq!(
            concerned_device(Some("usr_1"), &d).as_deref(),
            Some("dev_b")
        );
        assert_eq!(concerned_device(None, &d).as_deref(), Some("dev_b"));
        assert_eq!(concerned_device(Some("alr_1"), &json!({})), None);
        assert_eq!(concerned_device(None, &json!({"device_id": null})), None);
        assert_eq!(concerned_device(None, &json!({"device_id": 7})), None);
        assert_eq!(concerned_device(None, &json!({"device_id": "usr_x"})), None);
        let long = format!("dev_{}", "x".repeat(300));
        assert_eq!(concerned_device(Some(&long), &json!({})), None);
    }
}
