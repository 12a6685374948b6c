//! Weekly time windows: days of the week and a time of day, in a fixed offset from UTC.
//!
//! A window runs from `start` (included) to `end` (excluded) on each of its `days` (every
//! day when `days` is left out). An `end` earlier than `start` makes an overnight window
//! (`22:00`–`06:00`): the part after midnight belongs to the day the window started on,
//! so `{"days": ["fri"], "start": "22:00", "end": "06:00"}` holds from Friday 22:00 to
//! Saturday 06:00. `end` may be `24:00` (the end of the day). The offset is fixed (no
//! daylight-saving rules): write the offset in force, and change it when it changes.

use serde::{Deserialize, Serialize};
use tether_proto::UnixMillis;

use crate::format::{PolicyError, Weekday};

/// Minutes in a day.
const DAY_MINUTES: i64 = 1440;
/// The furthest offset from UTC in use (UTC+14:00), in minutes.
const MAX_OFFSET_MINUTES: i32 = 14 * 60;

/// A weekly window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// The days it is open (default: every day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<Weekday>>,
    /// Opening time, `HH:MM` (00:00..=23:59).
    pub start: String,
    /// Closing time, `HH:MM` (00:01..=24:00), excluded; earlier than `start` for an
    /// overnight window.
    pub end: String,
    /// The window's time zone as minutes east of UTC (-840..=840, default 0).
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

/// `HH:MM` as minutes since midnight; `24:00` only when `allow_24`.
fn parse_hhmm(s: &str, allow_24: bool) -> Option<i64> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = h.parse().ok()?;
    let m: i64 = m.parse().ok()?;
    let total = h.checked_mul(60)?.checked_add(m)?;
    let ok = (h < 24 && m < 60) || (allow_24 && h == 24 && m == 0);
    ok.then_some(total)
}

impl Window {
    pub(crate) fn validate(&self, at: &str) -> Result<(), PolicyError> {
        if let Some(days) = &self.days {
            if days.is_empty() {
                return Err(PolicyError::at(
                    format!("{at}.days"),
                    "an empty list matches nothing; leave days out for every day",
                ));
            }
            if days.len() > 7 {
                return Err(PolicyError::at(format!("{at}.days"), "at most 7 days"));
            }
        }
        let start = parse_hhmm(&self.start, false).ok_or_else(|| {
            PolicyError::at(format!("{at}.start"), "must be HH:MM, 00:00..=23:59")
        })?;
        let end = parse_hhmm(&self.end, true)
            .ok_or_else(|| PolicyError::at(format!("{at}.end"), "must be HH:MM, 00:00..=24:00"))?;
        if start == end || (start == 0 && end == DAY_MINUTES) && self.days.is_none() {
            return Err(PolicyError::at(
                format!("{at}.end"),
                "the window must not be empty or the whole week (leave the condition out)",
            ));
        }
        if !(-MAX_OFFSET_MINUTES..=MAX_OFFSET_MINUTES).contains(&self.utc_offset_minutes) {
            return Err(PolicyError::at(
                format!("{at}.utc_offset_minutes"),
                "must be -840..=840",
            ));
        }
        Ok(())
    }

    fn day_open(&self, day: Weekday) -> bool {
        self.days.as_ref().is_none_or(|d| d.contains(&day))
    }

    /// Whether `now` is inside the window. A window that does not parse (it was not
    /// validated) is never open.
    pub fn contains(&self, now: UnixMillis) -> bool {
        let (Some(start), Some(end)) =
            (parse_hhmm(&self.start, false), parse_hhmm(&self.end, true))
        else {
            return false;
        };
        let ms = i64::try_from(now.0).unwrap_or(i64::MAX);
        let local_minutes = ms
            .div_euclid(60_000)
            .saturating_add(i64::from(self.utc_offset_minutes));
        let day = local_minutes.div_euclid(DAY_MINUTES);
        let minute = local_minutes.rem_euclid(DAY_MINUTES);
        if start < end {
            (start..end).contains(&minute) && self.day_open(weekday(day))
        } else if minute >= start {
            self.day_open(weekday(day))
        } else if minute < end {
            self.day_open(weekday(day.saturating_sub(1)))
        } else {
            false
        }
    }

    /// For reasons: `mon-fri 08:00-18:00 (UTC+01:00)`.
    pub fn describe(&self) -> String {
        let off = self.utc_offset_minutes;
        let sign = if off < 0 { '-' } else { '+' };
        let abs = off.unsigned_abs();
        let zone = format!("UTC{sign}{:02}:{:02}", abs / 60, abs % 60);
        let days = match &self.days {
            None => String::new(),
            Some(d) => format!("{} ", describe_days(d)),
        };
        format!("{days}{}-{} ({zone})", self.start, self.end)
    }
}

/// The weekday of a day number since 1970-01-01 (a Thursday).
fn weekday(day: i64) -> Weekday {
    let i = usize::try_from(day.saturating_add(3).rem_euclid(7)).unwrap_or(0);
    Weekday::ALL.get(i).copied().unwrap_or(Weekday::Mon)
}

/// `mon-fri` for a run of three or more consecutive days, else `mon,wed`.
fn describe_days(days: &[Weekday]) -> String {
    let mut sorted = days.to_vec();
    sorted.sort();
    sorted.dedup();
    let consecutive = sorted.windows(2).all(|w| match w {
        [a, b] => (*b as usize) == (*a as usize).saturating_add(1),
        _ => true,
    });
    match (sorted.first(), sorted.last()) {
        (Some(first), Some(last)) if consecutive && sorted.len() >= 3 => {
            format!("{}-{}", first.as_str(), last.as_str())
        }
        _ => sorted
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(","),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        reason = "tests"
    )]

    use super::*;

    /// 2025-11-24 was a Monday; 00:00 UTC.
    const MONDAY: u64 = 1_763_942_400_000;

    fn at(day: u64, h: u64, m: u64) -> UnixMillis {
        UnixMillis(MONDAY + day * 86_400_000 + h * 3_600_000 + m * 60_000)
    }

    fn window(days: Option<&[Weekday]>, start: &str, end: &str, off: i32) -> Window {
        Window {
            days: days.map(<[Weekday]>::to_vec),
            start: start.into(),
            end: end.into(),
            utc_offset_minutes: off,
        }
    }

    #[test]
    fn weekdays_from_the_epoch() {
        assert_eq!(weekday(0), Weekday::Thu);
        assert_eq!(weekday(-1), Weekday::Wed);
        assert_eq!(
            weekday(i64::try_from(MONDAY / 86_400_000).unwrap()),
            Weekday::Mon
        );
    }

    #[test]
    fn day_window_with_offset() {
        let w = window(
            Some(&[
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ]),
            "08:00",
            "18:00",
            60,
        );
        // 07:00 UTC is 08:00 at UTC+1: open; 16:59 UTC is 17:59: open; 17:00 UTC closed.
        assert!(w.contains(at(0, 7, 0)));
        assert!(!w.contains(at(0, 6, 59)));
        assert!(w.contains(at(0, 16, 59)));
        assert!(!w.contains(at(0, 17, 0)));
        // Saturday is closed.
        assert!(!w.contains(at(5, 12, 0)));
        // Sunday 23:30 UTC is Monday 00:30 local: Monday, but before 08:00.
        assert!(!w.contains(at(6, 23, 30)));
        assert_eq!(w.describe(), "mon-fri 08:00-18:00 (UTC+01:00)");
    }

    #[test]
    fn overnight_window_belongs_to_its_start_day() {
        let w = window(Some(&[Weekday::Fri]), "22:00", "06:00", 0);
        assert!(w.contains(at(4, 22, 0)), "Friday 22:00");
        assert!(w.contains(at(5, 5, 59)), "Saturday 05:59");
        assert!(!w.contains(at(5, 6, 0)), "Saturday 06:00");
        assert!(!w.contains(at(5, 22, 30)), "Saturday night is not Friday's");
        assert!(
            !w.contains(at(4, 5, 0)),
            "Friday early morning is Thursday's"
        );
    }

    #[test]
    fn negative_offset_and_end_of_day() {
        let w = window(None, "20:00", "24:00", -300);
        // 01:00 UTC Tuesday is 20:00 Monday at UTC-5.
        assert!(w.contains(at(1, 1, 0)));
        assert!(w.contains(at(1, 4, 59)));
        assert!(!w.contains(at(1, 5, 0)));
        assert_eq!(w.describe(), "20:00-24:00 (UTC-05:00)");
    }

    #[test]
    fn shapes_are_checked() {
        let ok = |s: &str, e: &str| window(None, s, e, 0).validate("w");
        assert!(ok("08:00", "18:00").is_ok());
        assert_eq!(ok("8:00", "18:00").unwrap_err().path, "w.start");
        assert_eq!(ok("08:00", "24:01").unwrap_err().path, "w.end");
        assert_eq!(ok("24:00", "01:00").unwrap_err().path, "w.start");
        assert_eq!(ok("08:00", "08:00").unwrap_err().path, "w.end");
        assert_eq!(ok("00:00", "24:00").unwrap_err().path, "w.end");
        assert_eq!(
            window(None, "08:00", "09:00", 900)
                .validate("w")
                .unwrap_err()
                .path,
            "w.utc_offset_minutes"
        );
        assert_eq!(
            window(Some(&[]), "08:00", "09:00", 0)
                .validate("w")
                .unwrap_err()
                .path,
            "w.days"
        );
        assert_eq!(describe_days(&[Weekday::Sat, Weekday::Mon]), "mon,sat");
    }
}
