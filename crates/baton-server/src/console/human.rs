//! Numbers as a person reads them on a page: sizes and speeds in decimal units (as download
//! tools show them), durations rounded to what matters for waiting ("about 12 min"), and
//! lengths as a player's clock shows them ("1:02:03").

/// `1536` → `1.5 kB`; below a kilobyte, whole bytes.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A wait in words: `about 12 min`, `about 2 h 5 min`, `about 3 days`; under a minute,
/// `less than a minute`.
pub(super) fn about(secs: u64) -> String {
    let mins = (secs + 30) / 60;
    match mins {
        0 => "less than a minute".into(),
        1..=59 => format!("about {mins} min"),
        60..=2879 => match (mins / 60, mins % 60) {
            (h, 0) => format!("about {h} h"),
            (h, m) => format!("about {h} h {m} min"),
        },
        _ => format!("about {} days", (mins + 720) / 1440),
    }
}

/// A length in milliseconds as a player's clock shows it, to the second: `0:07`, `12:34`,
/// `1:02:03`.
pub(super) fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_decimal_units_with_one_decimal() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1536), "1.5 kB");
        assert_eq!(bytes(12_345_678), "12.3 MB");
        assert_eq!(bytes(999_999), "1.0 MB");
        assert_eq!(bytes(64 << 30), "68.7 GB");
    }

    #[test]
    fn an_estimate_reads_as_about_so_many_minutes_hours_or_days() {
        assert_eq!(about(20), "less than a minute");
        assert_eq!(about(45), "about 1 min");
        assert_eq!(about(12 * 60 + 10), "about 12 min");
        assert_eq!(about(3600), "about 1 h");
        assert_eq!(about(2 * 3600 + 5 * 60), "about 2 h 5 min");
        assert_eq!(about(3 * 86_400 + 100), "about 3 days");
    }

    #[test]
    fn a_length_reads_like_a_players_clock() {
        assert_eq!(clock(0), "0:00");
        assert_eq!(clock(7_999), "0:07");
        assert_eq!(clock((12 * 60 + 34) * 1000), "12:34");
        assert_eq!(clock((3600 + 2 * 60 + 3) * 1000), "1:02:03");
    }
}
