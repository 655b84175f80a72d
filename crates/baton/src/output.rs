//! Printing results as a table for people, or JSON / YAML for scripts: the CLI's `-o`, and the
//! benches' figures (a module of its own so both use it without depending on each other).

use comfy_table::{Table, presets::NOTHING};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// A value that prints as table rows.
pub trait Tabular {
    fn headers() -> &'static [&'static str];
    fn row(&self) -> Vec<String>;
}

/// Tells the user, on stderr, that a list has more rows than were printed.
pub fn more_rows(next_cursor: &Option<String>) {
    if next_cursor.is_some() {
        eprintln!("(more rows on the server: raise --limit)");
    }
}

/// Prints a list.
pub fn list<T: Tabular + Serialize>(format: Format, items: &[T]) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let mut table = Table::new();
            table.load_preset(NOTHING).set_header(T::headers());
            for item in items {
                table.add_row(item.row());
            }
            println!("{table}");
            Ok(())
        }
        _ => structured(format, &items),
    }
}

/// Prints one item.
pub fn one<T: Tabular + Serialize>(format: Format, item: &T) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let mut table = Table::new();
            table.load_preset(NOTHING);
            for (h, v) in T::headers().iter().zip(item.row()) {
                table.add_row(vec![format!("{h}:"), v]);
            }
            println!("{table}");
            Ok(())
        }
        _ => structured(format, item),
    }
}

/// Prints any value as JSON or YAML (tables fall back to JSON).
pub fn structured<T: Serialize + ?Sized>(format: Format, value: &T) -> anyhow::Result<()> {
    match format {
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(value)?),
        _ => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

/// An optional time, relative to now, for tables.
pub fn ago(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    let Some(t) = t else { return "-".into() };
    let secs = (chrono::Utc::now() - t).num_seconds();
    match secs {
        s if s < 0 => format!("in {}", human(-s)),
        s => format!("{} ago", human(s)),
    }
}

fn human(s: i64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}
