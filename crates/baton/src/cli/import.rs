//! `baton devices import FILE.csv`: pre-registers devices from a CSV file in one all-or-nothing
//! request. Columns: `serial` (required), `name`, `groups` (group names, `;`-separated, resolved
//! to ids by exact name) and `labels` (`k=v;k2=v2`). Every error names the CSV line.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use anyhow::Context;
use baton_client::{Client, ClientError};
use baton_proto::api::{devices::DeviceCreate, enrollment::DeviceImport, groups::GroupQuery};

use super::{
    Global, csv,
    output::{self, Format},
};

const COLUMNS: [&str; 4] = ["serial", "name", "groups", "labels"];

/// One device to create and the line it came from.
struct Row {
    line: usize,
    device: DeviceCreate,
    group_names: Vec<String>,
}

pub async fn run(file: &Path, client: &Client, g: &Global) -> anyhow::Result<()> {
    let name = file.display();
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?;
    let mut rows = read(&text).with_context(|| name.to_string())?;
    resolve_groups(client, &mut rows).await.with_context(|| name.to_string())?;
    let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
    let devices = rows.into_iter().map(|r| r.device).collect();
    let created = match client.import_devices(&DeviceImport { devices }).await {
        Ok(created) => created,
        Err(e) => return Err(by_line(e, &lines).context(name.to_string())),
    };
    match g.output {
        Format::Table => {
            println!("Created {} device(s) from {name}", created.len());
            Ok(())
        }
        f => output::structured(f, &created),
    }
}

/// The rows of a CSV file, checked but with group names not yet resolved.
fn read(text: &str) -> anyhow::Result<Vec<Row>> {
    let records = csv::parse(text)?;
    let (header, records) = records.split_first().context("the file is empty; its first line must be the header")?;
    let mut at = HashMap::new();
    for (i, column) in header.fields.iter().enumerate() {
        let column = column.trim().to_ascii_lowercase();
        anyhow::ensure!(
            COLUMNS.contains(&column.as_str()),
            "line {}: unknown column `{column}`; the columns are {}",
            header.line,
            COLUMNS.join(",")
        );
        anyhow::ensure!(at.insert(column.clone(), i).is_none(), "line {}: column `{column}` twice", header.line);
    }
    anyhow::ensure!(at.contains_key("serial"), "line {}: the header has no `serial` column", header.line);
    anyhow::ensure!(!records.is_empty(), "no devices below the header");
    records
        .iter()
        .map(|r| {
            anyhow::ensure!(
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

fn row(line: usize, serial: &str, name: &str, groups: &str, labels: &str) -> anyhow::Result<Row> {
    anyhow::ensure!(!serial.is_empty(), "line {line}: the serial is empty");
    let labels = split(labels)
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| format!("line {line}: label `{l}` must look like key=value"))
        })
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
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

/// Turns group names into ids, asking the server once per distinct name.
async fn resolve_groups(client: &Client, rows: &mut [Row]) -> anyhow::Result<()> {
    let mut ids: HashMap<String, Option<String>> = HashMap::new();
    for row in rows.iter_mut() {
        for name in &row.group_names {
            if !ids.contains_key(name) {
                ids.insert(name.clone(), group_id(client, name).await?);
            }
            let id = ids.get(name).cloned().flatten();
            let id = id.with_context(|| format!("line {}: no group is named `{name}`", row.line))?;
            row.device.groups.push(id);
        }
    }
    Ok(())
}

/// The id of the group named exactly `name`.
async fn group_id(client: &Client, name: &str) -> anyhow::Result<Option<String>> {
    let mut query = GroupQuery { q: Some(name.to_owned()), limit: Some(500), ..Default::default() };
    loop {
        let page = client.groups(&query).await?;
        if let Some(group) = page.items.into_iter().find(|g| g.name == name) {
            return Ok(Some(group.id));
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return Ok(None),
        }
    }
}

/// Rewrites the server's `/devices/{i}/…` field errors to name CSV lines instead.
fn by_line(e: ClientError, lines: &[usize]) -> anyhow::Error {
    let ClientError::Api { problem, .. } = &e else { return e.into() };
    let located: Vec<String> = problem
        .errors
        .iter()
        .filter_map(|f| {
            let rest = f.field.strip_prefix("/devices/")?;
            let (index, field) = rest.split_once('/').unwrap_or((rest, ""));
            let line = lines.get(index.parse::<usize>().ok()?)?;
            let field = field.split('/').next().unwrap_or_default();
            Some(match field {
                "" => format!("line {line}: {}", f.message),
                field => format!("line {line}: {field}: {}", f.message),
            })
        })
        .collect();
    if located.is_empty() || located.len() != problem.errors.len() {
        return e.into();
    }
    anyhow::anyhow!(located.join("; "))
}

#[cfg(test)]
mod tests {
    use baton_proto::api::problem::{FieldError, Problem};

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

    #[test]
    fn server_field_errors_become_csv_lines() {
        let problem = Problem {
            kind: "about:blank".into(),
            title: "Invalid input".into(),
            status: 422,
            detail: None,
            errors: vec![FieldError { field: "/devices/1/serial".into(), message: "already exists".into() }],
        };
        let e = ClientError::Api { status: baton_client::StatusCode::UNPROCESSABLE_ENTITY, problem };
        assert_eq!(by_line(e, &[2, 5]).to_string(), "line 5: serial: already exists");
    }
}
