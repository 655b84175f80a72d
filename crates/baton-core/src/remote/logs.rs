//! Live logs as the server sees them: what an operator may ask of a device's logs (checked
//! before the device is asked, each refusal naming the field), whether remote support may reach
//! the device, and the events that say who read which logs of which device, and how much.
//! The stream itself is relayed by the server (`baton-server`'s logs route); the device reads
//! and filters its own logs.

use std::time::Duration;

use baton_proto::streams::{LogQuery, LogSource};

use super::{Actor, kind, reachable};
use crate::{Error, access::TenantScope, bus::SharedBus, events, store::Db};

/// The most lines one may ask to see first.
pub const MAX_LINES: u32 = 100_000;
/// The furthest back `since` may reach: ten years.
pub const MAX_SINCE_SECS: u64 = 10 * 366 * 24 * 3600;
/// The most units one query names.
pub const MAX_UNITS: usize = 32;
/// Longest path (bytes).
pub const MAX_PATH: usize = 4096;
/// Longest unit name (bytes).
pub const MAX_UNIT: usize = 256;
/// Longest pattern (bytes).
pub const MAX_GREP: usize = 1024;

/// Checks a query from the API; the error names the query parameter that is wrong.
pub fn validate(query: &LogQuery) -> Result<(), Error> {
    let journal = query.source == LogSource::Journal;
    match (&query.path, query.source) {
        (None, LogSource::File) => return Err(Error::invalid("path", "a file log needs the file's absolute path")),
        (Some(path), LogSource::File) => {
            if !path.starts_with('/') && !is_windows_absolute(path) {
                return Err(Error::invalid("path", "must be absolute"));
            }
            if path.len() > MAX_PATH || path.contains('\0') {
                return Err(Error::invalid("path", format!("at most {MAX_PATH} bytes, without NUL")));
            }
        }
        (Some(_), _) => return Err(Error::invalid("path", "only for source=file")),
        (None, _) => {}
    }
    if !query.units.is_empty() && !journal {
        return Err(Error::invalid("unit", "only for source=journal"));
    }
    if query.units.len() > MAX_UNITS {
        return Err(Error::invalid("unit", format!("at most {MAX_UNITS} units")));
    }
    if query.units.iter().any(|u| u.is_empty() || u.len() > MAX_UNIT || u.chars().any(char::is_control)) {
        return Err(Error::invalid("unit", format!("each unit 1–{MAX_UNIT} bytes, without control characters")));
    }
    match query.priority {
        Some(_) if !journal => return Err(Error::invalid("priority", "only for source=journal")),
        Some(p) if p > 7 => return Err(Error::invalid("priority", "must be 0 (emerg) to 7 (debug)")),
        _ => {}
    }
    if let Some(grep) = &query.grep
        && (grep.is_empty() || grep.len() > MAX_GREP || grep.contains('\0'))
    {
        return Err(Error::invalid("grep", format!("1–{MAX_GREP} bytes, without NUL")));
    }
    match query.since_secs {
        Some(_) if !journal => return Err(Error::invalid("since", "only for source=journal")),
        Some(s) if s > MAX_SINCE_SECS => return Err(Error::invalid("since", "at most 10 years")),
        _ => {}
    }
    if query.lines.is_some_and(|l| l > MAX_LINES) {
        return Err(Error::invalid("lines", format!("at most {MAX_LINES}")));
    }
    Ok(())
}

fn is_windows_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/')
}

/// Before a device is asked for its logs: the query is sound and remote support may reach
/// the device (the tenant's, active, remote access on).
pub async fn check(db: &Db, scope: &TenantScope, device_id: &str, query: &LogQuery) -> Result<(), Error> {
    validate(query)?;
    reachable(db, scope, device_id).await
}

/// How a log stream went, for its closing event.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Lines (log records) passed on.
    pub lines: u64,
    pub bytes: u64,
    pub duration: Duration,
    pub reason: String,
}

/// The device accepted: records who reads which logs.
pub async fn opened(db: &Db, bus: &SharedBus, scope: &TenantScope, device_id: &str, actor: &Actor, query: &LogQuery) {
    events::record(db, bus, scope, Some(device_id), kind::LOGS_OPENED, data(actor, query)).await;
}

/// The stream ended: records how much was read and why it ended.
pub async fn closed(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    device_id: &str,
    actor: &Actor,
    query: &LogQuery,
    tally: &Tally,
) {
    let mut data = data(actor, query);
    data["lines"] = tally.lines.into();
    data["bytes"] = tally.bytes.into();
    data["duration_ms"] = (tally.duration.as_millis() as u64).into();
    data["reason"] = tally.reason.clone().into();
    events::record(db, bus, scope, Some(device_id), kind::LOGS_CLOSED, data).await;
}

fn data(actor: &Actor, query: &LogQuery) -> serde_json::Value {
    serde_json::json!({
        "user": actor.label, "source_addr": actor.source_addr, "source": query.source,
        "path": query.path, "units": query.units, "grep": query.grep, "priority": query.priority,
        "since_secs": query.since_secs, "follow": query.follow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(query: LogQuery) -> String {
        match validate(&query) {
            Ok(()) => String::new(),
            Err(Error::Invalid { errors, .. }) => errors[0].field.clone(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn each_field_out_of_bounds_is_refused_by_name() {
        let file = |path: &str| LogQuery { source: LogSource::File, path: Some(path.into()), ..LogQuery::default() };
        assert_eq!(field(file("/var/log/syslog")), "");
        assert_eq!(field(file("relative.log")), "path");
        assert_eq!(field(file(&format!("/{}", "a".repeat(MAX_PATH)))), "path");
        assert_eq!(field(LogQuery { source: LogSource::File, ..LogQuery::default() }), "path");
        assert_eq!(field(LogQuery { path: Some("/x".into()), ..LogQuery::default() }), "path");
        let journal = LogQuery::default();
        assert_eq!(field(LogQuery { priority: Some(8), ..journal.clone() }), "priority");
        assert_eq!(field(LogQuery { priority: Some(7), ..journal.clone() }), "");
        assert_eq!(field(LogQuery { units: vec!["a\nb".into()], ..journal.clone() }), "unit");
        assert_eq!(field(LogQuery { units: vec!["u".into(); MAX_UNITS + 1], ..journal.clone() }), "unit");
        assert_eq!(field(LogQuery { units: vec!["x".repeat(MAX_UNIT + 1)], ..journal.clone() }), "unit");
        assert_eq!(field(LogQuery { grep: Some("x".repeat(MAX_GREP + 1)), ..journal.clone() }), "grep");
        assert_eq!(field(LogQuery { lines: Some(MAX_LINES + 1), ..journal.clone() }), "lines");
        assert_eq!(field(LogQuery { since_secs: Some(MAX_SINCE_SECS + 1), ..journal.clone() }), "since");
        assert_eq!(field(LogQuery { since_secs: Some(60), ..file("/var/log/x") }), "since");
        assert_eq!(field(LogQuery { units: vec!["a".into()], ..file("/var/log/x") }), "unit");
    }
}
