//! `baton devices attributes | set-desired | credentials`: a device's reported and desired
//! attributes side by side, changing the desired ones, and issuing a device secret for devices
//! that never enroll themselves (MQTT devices); the secret is printed once.

use baton_client::Client;
use baton_proto::api::attributes::DeviceAttributes;
use serde_json::{Map, Value};

use super::{
    Global,
    output::{self, Format, Tabular},
};

/// `baton devices attributes <id>`.
pub async fn show(client: &Client, id: &str, g: &Global) -> anyhow::Result<()> {
    print(g.output, id, &client.device_attributes(id).await?)
}

/// `baton devices set-desired <id> key=value … --unset key …`.
pub async fn set_desired(
    client: &Client,
    id: &str,
    changes: &[String],
    unset: &[String],
    g: &Global,
) -> anyhow::Result<()> {
    let patch = desired_patch(changes, unset)?;
    print(g.output, id, &client.patch_desired_attributes(id, &patch).await?)
}

/// `baton devices credentials <id>`: the secret alone on stdout, so scripts can capture it; the
/// advice on stderr.
pub async fn issue_credential(client: &Client, id: &str, g: &Global) -> anyhow::Result<()> {
    let credential = client.issue_device_credential(id).await?;
    if g.output != Format::Table {
        return output::structured(g.output, &credential);
    }
    eprintln!("New secret for device {id}; store it now, it is not shown again (the old one stopped working):");
    say!("{}", credential.secret);
    eprintln!(
        "An MQTT device signs in with username `{id}` and the secret as password, \
         or (ThingsBoard style) with the secret alone as username."
    );
    Ok(())
}

/// `key=value` arguments and `--unset key` options as a JSON merge patch.
fn desired_patch(changes: &[String], unset: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut patch = Map::new();
    for change in changes {
        let (key, value) = change
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("`{change}` must be key=value (or use --unset key)"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        patch.insert(key.to_owned(), value);
    }
    for key in unset {
        patch.insert(key.clone(), Value::Null);
    }
    Ok(patch)
}

/// One attribute, side by side: what the device reported and what operators want.
#[derive(serde::Serialize)]
struct AttributeRow<'a> {
    key: &'a str,
    reported: Option<&'a Value>,
    desired: Option<&'a Value>,
}

fn print(format: Format, id: &str, attributes: &DeviceAttributes) -> anyhow::Result<()> {
    if format != Format::Table {
        return output::structured(format, attributes);
    }
    let mut keys: Vec<&str> = attributes.reported.keys().chain(attributes.desired.keys()).map(String::as_str).collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        say!("Device {id} has no attributes yet.");
        return Ok(());
    }
    let rows: Vec<AttributeRow> = keys
        .into_iter()
        .map(|key| AttributeRow { key, reported: attributes.reported.get(key), desired: attributes.desired.get(key) })
        .collect();
    output::list(Format::Table, &rows)
}

impl Tabular for AttributeRow<'_> {
    fn headers() -> &'static [&'static str] {
        &["KEY", "REPORTED", "DESIRED"]
    }
    fn row(&self) -> Vec<String> {
        let show = |v: Option<&Value>| v.map_or_else(|| "-".to_owned(), Value::to_string);
        vec![self.key.to_owned(), show(self.reported), show(self.desired)]
    }
}
