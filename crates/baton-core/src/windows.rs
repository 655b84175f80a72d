//! Maintenance windows: when installs may happen. A window opens at a local time in its own
//! time zone (so "02:00 in Europe/Berlin" follows daylight saving) on the days given, and stays
//! open for its duration, across midnight if need be. Checking and opening are pure functions
//! over milliseconds; [`of_device`] reads the windows a device inherits from its groups. Groups
//! store windows and rollouts obey them; both depend on this module, never on each other.

use baton_proto::api::rollouts::MaintenanceWindow;
use jiff::{Timestamp, civil::Weekday, tz::TimeZone};

use sqlx::Row;

use crate::{Error, access::TenantScope, error::Violations, store::Db};

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// Checks windows, naming the field at fault under `at` (e.g. `/windows`).
pub fn check(v: &mut Violations, at: &str, windows: &[MaintenanceWindow]) {
    if windows.len() > 32 {
        v.add(at, "at most 32 windows");
    }
    for (i, w) in windows.iter().enumerate() {
        if start_of(w).is_none() {
            v.add(format!("{at}/{i}/start"), "a local time as HH:MM, e.g. 02:30");
        }
        if !(1..=7 * 24 * 60).contains(&w.duration_mins) {
            v.add(format!("{at}/{i}/duration_mins"), "between 1 minute and a week");
        }
        if TimeZone::get(&w.time_zone).is_err() {
            v.add(
                format!("{at}/{i}/time_zone"),
                format!("`{}` is not a time zone, e.g. Europe/Berlin or UTC", w.time_zone),
            );
        }
        if w.days.iter().any(|d| weekday(d).is_none()) {
            v.add(format!("{at}/{i}/days"), "days as mon, tue, wed, thu, fri, sat, sun");
        }
    }
}

/// Whether any window is open at `now_ms`. No windows: always.
pub fn open_at(windows: &[MaintenanceWindow], now_ms: i64) -> bool {
    windows.is_empty() || windows.iter().any(|w| is_open(w, now_ms))
}

fn is_open(w: &MaintenanceWindow, now_ms: i64) -> bool {
    let (Some((hour, minute)), Ok(tz), Ok(now)) =
        (start_of(w), TimeZone::get(&w.time_zone), Timestamp::from_millisecond(now_ms))
    else {
        return false;
    };
    let today = now.to_zoned(tz.clone()).date();
    let length = i64::from(w.duration_mins) * 60_000;
    // A window that opened on one of the last days may still be open (up to a week long).
    (0..=7).any(|back| {
        let Ok(day) = today.checked_sub(jiff::Span::new().days(back)) else { return false };
        if !w.days.is_empty() && !w.days.iter().any(|d| weekday(d) == Some(day.weekday())) {
            return false;
        }
        let Ok(opens) = day.at(hour, minute, 0, 0).to_zoned(tz.clone()) else { return false };
        let opens = opens.timestamp().as_millisecond();
        opens <= now_ms && now_ms < opens + length
    })
}

fn start_of(w: &MaintenanceWindow) -> Option<(i8, i8)> {
    let (h, m) = w.start.trim().split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m) && w.start.trim().len() == 5).then_some((h, m))
}

fn weekday(day: &str) -> Option<Weekday> {
    let day = day.trim().to_ascii_lowercase();
    DAYS.iter().find(|(name, _)| day.starts_with(name)).map(|(_, d)| *d)
}

/// The maintenance windows that apply to a device: those of its groups and their ancestors.
pub async fn of_device(db: &Db, scope: &TenantScope, device_id: &str) -> Result<Vec<MaintenanceWindow>, Error> {
    let any =
        sqlx::query("SELECT id FROM device_groups WHERE tenant_id = $1 AND maintenance_windows IS NOT NULL LIMIT 1")
            .bind(scope.id())
            .fetch_optional(db.reader())
            .await?;
    if any.is_none() {
        return Ok(Vec::new());
    }
    let rows =
        sqlx::query("SELECT g.id, g.parent_id, g.maintenance_windows FROM device_groups g WHERE g.tenant_id = $1")
            .bind(scope.id())
            .fetch_all(db.reader())
            .await?;
    let member: Vec<String> = sqlx::query("SELECT group_id FROM group_members WHERE device_id = $1")
        .bind(device_id)
        .fetch_all(db.reader())
        .await?
        .iter()
        .map(|r| r.try_get("group_id"))
        .collect::<Result<_, _>>()?;
    let mut by_id = std::collections::HashMap::new();
    for row in &rows {
        let id: String = row.try_get("id")?;
        let parent: Option<String> = row.try_get("parent_id")?;
        let windows: Option<String> = row.try_get("maintenance_windows")?;
        by_id.insert(id, (parent, windows));
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for start in member {
        let mut at = Some(start);
        while let Some(id) = at.take() {
            if !seen.insert(id.clone()) {
                break;
            }
            let Some((parent, windows)) = by_id.get(&id) else { break };
            if let Some(text) = windows {
                out.extend(serde_json::from_str::<Vec<MaintenanceWindow>>(text).unwrap_or_default());
            }
            at = parent.clone();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: &str, mins: u32, tz: &str, days: &[&str]) -> MaintenanceWindow {
        MaintenanceWindow {
            start: start.into(),
            duration_mins: mins,
            time_zone: tz.into(),
            days: days.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().expect("timestamp").as_millisecond()
    }

    #[test]
    fn a_window_is_open_from_its_local_start_for_its_duration() {
        let w = [window("02:00", 60, "Europe/Berlin", &[])];
        // 02:30 in Berlin in winter is 01:30 UTC; in summer 00:30 UTC.
        assert!(open_at(&w, at("2026-01-15T01:30:00Z")));
        assert!(!open_at(&w, at("2026-01-15T00:59:00Z")));
        assert!(!open_at(&w, at("2026-01-15T02:00:00Z")));
        assert!(open_at(&w, at("2026-07-15T00:30:00Z")));
    }

    #[test]
    fn a_window_may_cross_midnight_and_keep_to_its_days() {
        let w = [window("23:00", 120, "UTC", &["sat"])];
        assert!(open_at(&w, at("2026-11-28T23:30:00Z")), "Saturday night");
        assert!(open_at(&w, at("2026-11-29T00:30:00Z")), "still open after midnight");
        assert!(!open_at(&w, at("2026-11-27T23:30:00Z")), "not on Friday");
        assert!(open_at(&[], at("2026-11-27T23:30:00Z")), "no windows: any time");
    }

    #[test]
    fn bad_windows_name_their_field() {
        let mut v = Violations::default();
        check(&mut v, "/windows", &[window("2:00", 0, "Mars/Olympus", &["someday"])]);
        let Err(crate::Error::Invalid { errors, .. }) = v.finish() else { panic!("refused") };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["/windows/0/start", "/windows/0/duration_mins", "/windows/0/time_zone", "/windows/0/days"]);
    }
}
