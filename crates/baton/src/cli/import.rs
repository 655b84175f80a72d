//! `baton devices import FILE.csv`: pre-registers devices from a CSV file in one all-or-nothing
//! request. Columns: `serial` (required), `name`, `groups` (group names, `;`-separated, resolved
//! to ids by exact name) and `labels` (`k=v;k2=v2`). Every error names the CSV line.

use std::{collections::HashMap, path::Path};

use anyhow::Context;
use baton_client::{Client, ClientError};
use baton_proto::{
    api::{enrollment::DeviceImport, groups::GroupQuery},
    import::{Row, locate, read},
};

use super::{
    Global,
    output::{self, Format},
};

pub async fn run(file: &Path, client: &Client, g: &Global) -> anyhow::Result<()> {
    let name = file.display();
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?;
    let mut rows = read(&text).map_err(anyhow::Error::msg).with_context(|| name.to_string())?;
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

/// The id of the group named exactly `name` (also used by `baton rollouts create --group`).
pub(super) async fn group_id(client: &Client, name: &str) -> anyhow::Result<Option<String>> {
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
    let located: Vec<String> = problem.errors.iter().filter_map(|f| locate(&f.field, &f.message, lines)).collect();
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
