//! Live logs: what an operator asks of a device's logs ([`LogQuery`], the same fields as the
//! API's query string) and what comes back, one [`LogRecord`] as JSON per line.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where log entries come from.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// The systemd journal (`journalctl`), or the journal directory the agent is configured with.
    #[default]
    Journal,
    /// A plain file under the agent's `[remote] log_paths`.
    File,
    /// The Windows Event Log: not supported yet; an agent refuses it saying so.
    EventLog,
}

/// Which entries to show: the filters a person sets in the console or on `baton logs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct LogQuery {
    pub source: LogSource,
    /// The file, for [`LogSource::File`]: absolute, under the agent's `log_paths`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Journal units to show (`-u`); all when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
    /// Journal entries of this syslog priority or more urgent (0 emerg … 7 debug).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Only entries whose message matches this regular expression (case-insensitive unless it
    /// has capitals, like `journalctl --grep`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grep: Option<String>,
    /// Journal entries of the last this many seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_secs: Option<u64>,
    /// How many of the latest entries to show first (default 100 when following without
    /// `since_secs`, all within `since_secs` otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<u32>,
    /// Keep the stream open and send new entries as they are written.
    pub follow: bool,
}

/// One log entry, as the device read it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogRecord {
    /// When it was logged (the journal's time), or when the agent read it (a file's line).
    pub ts: DateTime<Utc>,
    /// `journal`, or the file's path.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    pub message: String,
}

/// A `since` as people write it: `90s`, `15m`, `1h`, `2d`, or plain seconds; `None` when it is
/// none of these (or too large).
pub fn duration_secs(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// A syslog priority by number (`3`) or name (`err`, `warning`…, as `journalctl -p` takes).
pub fn priority(text: &str) -> Option<u8> {
    const NAMES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
    let text = text.trim().to_ascii_lowercase();
    match text.parse::<u8>() {
        Ok(n) if n <= 7 => Some(n),
        Ok(_) => None,
        Err(_) => NAMES
            .iter()
            .position(|n| *n == text || (text == "error" && *n == "err") || (text == "warn" && *n == "warning"))
            .map(|p| p as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_units_and_plain_seconds_and_refuses_the_rest() {
        let got: Vec<_> = ["90s", "15m", "1h", "2d", "42"].iter().map(|t| duration_secs(t)).collect();
        assert_eq!(got, [Some(90), Some(900), Some(3600), Some(172_800), Some(42)]);
        for bad in ["", "h", "1w", "-5m", "1.5h", "99999999999999999999d"] {
            assert_eq!(duration_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_priority_is_a_number_or_a_name() {
        assert_eq!(
            [priority("3"), priority("err"), priority("Warning"), priority("debug")],
            [Some(3), Some(3), Some(4), Some(7)]
        );
        assert_eq!([priority("8"), priority("loud")], [None, None]);
    }
}
