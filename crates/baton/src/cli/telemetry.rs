//! `baton telemetry …`: a device's metric over time, and its latest values.

use std::time::Duration;

use baton_client::Client;
use baton_proto::api::telemetry::{Aggregate, Latest, Point, TelemetryQuery};
use serde::Serialize;

use super::{
    Global,
    output::{self, Format, Tabular},
};

#[derive(clap::Subcommand)]
pub enum TelemetryCommand {
    /// A metric of a device over time, in buckets.
    Query {
        device: String,
        /// The metric, e.g. cpu.usage_pct.
        #[arg(long)]
        metric: String,
        /// How far back: a number and a unit, s, m, h or d (e.g. 30m, 1h, 7d).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        since: Duration,
        /// Bucket width in seconds (server default: 60).
        #[arg(long)]
        bucket: Option<u32>,
        /// How values in a bucket combine (server default: avg).
        #[arg(long, value_enum)]
        agg: Option<Agg>,
    },
    /// The newest value of every metric of a device.
    Latest { device: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Agg {
    Avg,
    Min,
    Max,
    Last,
}

impl From<Agg> for Aggregate {
    fn from(a: Agg) -> Self {
        match a {
            Agg::Avg => Self::Avg,
            Agg::Min => Self::Min,
            Agg::Max => Self::Max,
            Agg::Last => Self::Last,
        }
    }
}

pub async fn run(cmd: TelemetryCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        TelemetryCommand::Query { device, metric, since, bucket, agg } => {
            let from = chrono::Utc::now() - chrono::Duration::from_std(since)?;
            let query = TelemetryQuery {
                metric,
                from: Some(from),
                to: None,
                bucket_secs: bucket,
                agg: agg.map(Aggregate::from),
            };
            let series = client.telemetry(&device, &query).await?;
            match g.output {
                Format::Table if series.points.is_empty() => {
                    println!("No samples of {} from device {device} in that time.", series.metric);
                    Ok(())
                }
                Format::Table => output::list(g.output, &series.points),
                f => output::structured(f, &series),
            }
        }
        TelemetryCommand::Latest { device } => {
            let latest = client.latest_telemetry(&device).await?;
            match g.output {
                Format::Table => print_latest(&latest),
                f => output::structured(f, &latest),
            }
        }
    }
}

fn print_latest(latest: &Latest) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Metric {
        name: String,
        value: f64,
    }
    impl Tabular for Metric {
        fn headers() -> &'static [&'static str] {
            &["METRIC", "VALUE"]
        }
        fn row(&self) -> Vec<String> {
            vec![self.name.clone(), number(self.value)]
        }
    }
    let (Some(at), false) = (latest.at, latest.metrics.is_empty()) else {
        println!("Device {} has reported no telemetry yet.", latest.device_id);
        return Ok(());
    };
    println!("As of {} ({}):", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), output::ago(Some(at)));
    let rows: Vec<Metric> = latest.metrics.iter().map(|(name, &value)| Metric { name: name.clone(), value }).collect();
    output::list(Format::Table, &rows)
}

impl Tabular for Point {
    fn headers() -> &'static [&'static str] {
        &["TIME", "VALUE", "COUNT"]
    }
    fn row(&self) -> Vec<String> {
        vec![self.ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), number(self.value), self.count.to_string()]
    }
}

/// A value without float noise: whole numbers bare, others to at most three decimals.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `30s`, `30m`, `1h` or `7d`: a positive whole number and a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "" if !number.is_empty() => return Err(format!("`{text}` needs a unit: s, m, h or d (e.g. {text}m)")),
        _ => return Err(format!("`{text}` is not a duration; use a number and s, m, h or d (e.g. 30m, 1h, 7d)")),
    };
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration; use e.g. 30m, 1h or 7d"))?;
    match n.checked_mul(unit_secs) {
        Some(0) => Err("the duration must be more than zero".into()),
        Some(secs) if secs <= 10 * 365 * 86_400 => Ok(Duration::from_secs(secs)),
        _ => Err(format!("`{text}` is too long; at most ten years")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_seconds_minutes_hours_and_days() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        for bad in ["", "h", "1x", "-1h", "1.5h", "1 h", "h1", "1hm"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
        assert!(parse_duration("15").expect_err("no unit").contains("needs a unit"));
        assert!(parse_duration("0m").expect_err("zero").contains("more than zero"));
        assert!(parse_duration("99999999999999999d").expect_err("overflow").contains("too long"));
    }

    #[test]
    fn numbers_print_without_float_noise() {
        assert_eq!(number(42.0), "42");
        assert_eq!(number(0.1 + 0.2), "0.3");
        assert_eq!(number(-1.25), "-1.25");
    }
}
