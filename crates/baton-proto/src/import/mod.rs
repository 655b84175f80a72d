//! The device import file: a CSV with the columns `serial` (required), `name`, `groups` (group
//! names, `;`-separated) and `labels` (`k=v;k2=v2`). `baton devices import` and the console's
//! enrollment page both read it with [`read`]; every error names the file's line.

use std::collections::{BTreeMap, HashMap};

use crate::api::devices::DeviceCreate;

/// `return Err(format!(…))`.
macro_rules! bail {
    ($($t:tt)*) => { return Err(format!($($t)*)) };
}

/// Fails with the message unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($t:tt)*) => { if !$cond { bail!($($t)*) } };
}

mod csv;

pub const COLUMNS: [&str; 4] = ["serial", "name", "groups", "labels"];

/// One device to create and the line it came from.
pub struct Row {
    pub line: usize,
    pub device: DeviceCreate,
    /// Group names, to be turned into ids by the caller.
    pub group_names: Vec<String>,
}

/// The rows of a CSV file, checked but with group names not yet resolved.
pub fn read(text: &str) -> Result<Vec<Row>, String> {
    let records = csv::parse(text)?;
    let (header, records) = records.split_first().ok_or("the file is empty; its first line must be the header")?;
    let mut at = HashMap::new();
    for (i, column) in header.fields.iter().enumerate() {
        let column = column.trim().to_ascii_lowercase();
        ensure!(
            COLUMNS.contains(&column.as_str()),
            "line {}: unknown column `{column}`; the columns are {}",
            header.line,
            COLUMNS.join(",")
        );
        ensure!(at.insert(column.clone(), i).is_none(), "line {}: column `{column}` twice", header.line);
    }
    ensure!(at.contains_key("serial"), "line {}: the header has no `serial` column", header.line);
    ensure!(!records.is_empty(), "no devices below the header");
    records
        .iter()
        .map(|r| {
            ensure!(
                r.fields.len() == header.fields.len(),
                "line {}: {} field(s), but the header has {}",
                r.line,
                r.fields.len(),
                header.fields.len()
            );
            let get = |column: &str| at.get(column).map_or("", |&i| r.fields[i].trim());
            row(r.line, get("serial"), get("name"), get("groups"), get("labels"))
        })
        .collect()
}

fn row(line: usize, serial: &str, name: &str, groups: &str, labels: &str) -> Result<Row, String> {
    ensure!(!serial.is_empty(), "line {line}: the serial is empty");
    let labels = split(labels)
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| format!("line {line}: label `{l}` must look like key=value"))
        })
        .collect::<Result<BTreeMap<_, _>, String>>()?;
    let device = DeviceCreate {
        serial: serial.to_owned(),
        name: (!name.is_empty()).then(|| name.to_owned()),
        labels,
        ..Default::default()
    };
    Ok(Row { line, device, group_names: split(groups).map(str::to_owned).collect() })
}

/// The non-empty, trimmed parts of a `;`-separated list.
fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(';').map(str::trim).filter(|s| !s.is_empty())
}

/// An import error the server reported for `/devices/{i}/…`, said with the CSV line of row `i`
/// (`lines[i]`); `None` for a field that names no row.
pub fn locate(field: &str, message: &str, lines: &[usize]) -> Option<String> {
    let rest = field.strip_prefix("/devices/")?;
    let (index, field) = rest.split_once('/').unwrap_or((rest, ""));
    let line = lines.get(index.parse::<usize>().ok()?)?;
    let field = field.split('/').next().unwrap_or_default();
    Some(match field {
        "" => format!("line {line}: {message}"),
        field => format!("line {line}: {field}: {message}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_names_labels_and_group_names() {
        let rows = read("serial,name,groups,labels\nS1,\"Till 1, front\",Berlin; Tills ,store=b12;tier=prod\nS2,,,\n")
            .expect("reads");
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].device.name.as_deref(), Some("Till 1, front"));
        assert_eq!(rows[0].group_names, ["Berlin", "Tills"]);
        assert_eq!(rows[0].device.labels.get("tier").map(String::as_str), Some("prod"));
        assert_eq!((rows[1].device.name.as_ref(), rows[1].group_names.len()), (None, 0));
    }

    #[test]
    fn columns_may_be_reordered_or_left_out() {
        let rows = read("labels,serial\na=1,S9\n").expect("reads");
        assert_eq!(rows[0].device.serial, "S9");
    }

    #[test]
    fn bad_rows_name_their_line() {
        let err = |text: &str| read(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err("serial,name\nS1\n").starts_with("line 2: 1 field(s)"));
        assert!(err("serial,labels\nS1,a=1\n\nS2,tier\n").starts_with("line 4: label `tier`"));
        assert!(err("serial,name\n,x\n").starts_with("line 2: the serial is empty"));
        assert!(err("serial,colour\n").starts_with("line 1: unknown column `colour`"));
        assert!(err("serial\n").contains("no devices"));
    }
}
