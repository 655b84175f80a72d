//! `baton devices …`: the device registry, approval of enrolled devices, inventory, attributes
//! and credentials (in [`super::attributes`]), CSV import (in [`super::import`]) and the live
//! event feed (in [`super::events`]); [`resolve`] finds a device by id, serial or name for the
//! commands that take one (`terminal`, `sessions`, `recordings`).

use std::{collections::BTreeMap, path::PathBuf};

use baton_client::{Client, ClientError};
use baton_proto::{
    api::devices::{Device, DeviceCreate, DeviceQuery, DeviceUpdate},
    inventory::Inventory,
};

use super::{
    Global,
    access::done,
    attributes, events, import,
    output::{self, Format, Tabular, ago, or_dash},
};

#[derive(clap::Subcommand)]
pub enum DevicesCommand {
    /// List devices, with filters.
    List(ListArgs),
    /// Show one device.
    Get { id: String },
    /// Pre-register a device by serial.
    Create {
        #[arg(long)]
        serial: String,
        #[arg(long)]
        name: Option<String>,
        /// key=value, repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Group id, repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Set labels (`key=value`) and remove them (`key-`), like kubectl.
    Label {
        id: String,
        #[arg(required = true)]
        changes: Vec<String>,
    },
    /// Rename a device.
    Rename { id: String, name: String },
    /// Retire a device: credentials revoked, waiting commands canceled, history kept.
    Decommission {
        id: String,
        /// Also make the agent erase its state and identity.
        #[arg(long)]
        wipe: bool,
    },
    /// Delete a decommissioned device for good.
    Delete { id: String },
    /// List devices waiting for approval.
    Pending {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Follow every page, not just the first.
        #[arg(long)]
        all: bool,
    },
    /// Let a pending device in.
    Approve { id: String },
    /// Turn a pending device away (it is decommissioned).
    Reject { id: String },
    /// Show what a device reported about itself: OS, hardware, disks, network.
    Inventory { id: String },
    /// Show a device's attributes: what it reported and what operators want it to have.
    Attributes { id: String },
    /// Change the attributes operators want a device to have: `key=value` sets one (the value
    /// is read as JSON when it parses, else as a string: `n=5` is a number, `n='"5"'` a
    /// string), `--unset key` (or `key=null`) removes one.
    SetDesired {
        id: String,
        #[arg(required_unless_present = "unset")]
        changes: Vec<String>,
        /// Attribute to remove, repeatable.
        #[arg(long)]
        unset: Vec<String>,
    },
    /// Issue a new secret for a device (printed once; the old one stops working), e.g. for an
    /// MQTT device that never runs the agent.
    Credentials { id: String },
    /// Pre-register devices from a CSV file with the header `serial,name,groups,labels`
    /// (groups by name, separated by `;`; labels as `k=v;k2=v2`), all or nothing.
    Import { file: PathBuf },
    /// Print device events as they happen, until interrupted.
    Watch {
        /// Only this device's events.
        #[arg(long)]
        device: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// pending, active or decommissioned.
    #[arg(long)]
    status: Option<String>,
    /// Only online (true) or offline (false) devices.
    #[arg(long)]
    online: Option<bool>,
    /// OS family, e.g. linux.
    #[arg(long)]
    os: Option<String>,
    /// Group id (members of its subgroups included).
    #[arg(long)]
    group: Option<String>,
    /// Label selector, e.g. 'store=berlin-12,tier!=test'.
    #[arg(long, short = 'l')]
    labels: Option<String>,
    /// A gateway's device id: the sub-devices it relays.
    #[arg(long)]
    gateway: Option<String>,
    /// Text in the name or serial.
    #[arg(long, short = 'q')]
    query: Option<String>,
    /// name, serial, created_at or last_seen_at; prefix - for descending.
    #[arg(long)]
    sort: Option<String>,
    /// Rows per page.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Follow every page, not just the first.
    #[arg(long)]
    all: bool,
}

pub async fn run(cmd: DevicesCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        DevicesCommand::List(a) => {
            let query = DeviceQuery {
                status: a.status,
                online: a.online,
                os: a.os,
                group: a.group,
                labels: a.labels,
                gateway_id: a.gateway,
                q: a.query,
                sort: a.sort,
                limit: Some(a.limit),
                ..DeviceQuery::default()
            };
            output::list(g.output, &list(client, query, a.all).await?)
        }
        DevicesCommand::Get { id } => output::one(g.output, &client.device(&id).await?),
        DevicesCommand::Create { serial, name, labels, groups } => {
            let labels = parse_labels(&labels)?;
            let device =
                client.create_device(&DeviceCreate { serial, name, labels, groups, ..Default::default() }).await?;
            output::one(g.output, &device)
        }
        DevicesCommand::Label { id, changes } => {
            let mut labels = BTreeMap::new();
            for change in &changes {
                match (change.split_once('='), change.strip_suffix('-')) {
                    (Some((k, v)), _) => labels.insert(k.to_owned(), Some(v.to_owned())),
                    (None, Some(k)) => labels.insert(k.to_owned(), None),
                    _ => anyhow::bail!("`{change}` must be key=value (set) or key- (remove)"),
                };
            }
            let device = client.update_device(&id, &DeviceUpdate { name: None, labels }).await?;
            output::one(g.output, &device)
        }
        DevicesCommand::Rename { id, name } => {
            let device = client.update_device(&id, &DeviceUpdate { name: Some(name), ..Default::default() }).await?;
            output::one(g.output, &device)
        }
        DevicesCommand::Decommission { id, wipe } => {
            output::one(g.output, &client.decommission_device(&id, wipe).await?)
        }
        DevicesCommand::Delete { id } => {
            client.delete_device(&id).await?;
            done(g.output, &format!("deleted device {id}"))
        }
        DevicesCommand::Pending { limit, all } => {
            let query = DeviceQuery { status: Some("pending".into()), limit: Some(limit), ..Default::default() };
            let devices = list(client, query, all).await?;
            if devices.is_empty() && g.output == Format::Table {
                println!("No devices are waiting for approval.");
                return Ok(());
            }
            output::list(g.output, &devices)
        }
        DevicesCommand::Approve { id } => output::one(g.output, &client.approve_device(&id).await?),
        DevicesCommand::Reject { id } => output::one(g.output, &client.reject_device(&id).await?),
        DevicesCommand::Inventory { id } => match (client.device_inventory(&id).await?, g.output) {
            (None, Format::Table) => {
                println!("Device {id} has not reported its inventory yet (it has never connected).");
                Ok(())
            }
            (Some(inventory), f) => output::one(f, &inventory),
            (None, f) => output::structured(f, &None::<Inventory>),
        },
        DevicesCommand::Attributes { id } => attributes::show(client, &id, g).await,
        DevicesCommand::SetDesired { id, changes, unset } => {
            attributes::set_desired(client, &id, &changes, &unset, g).await
        }
        DevicesCommand::Credentials { id } => attributes::issue_credential(client, &id, g).await,
        DevicesCommand::Import { file } => import::run(&file, client, g).await,
        DevicesCommand::Watch { device } => events::watch(client, device, g).await,
    }
}

/// Devices matching `query`: the first page, or every page with `all`.
async fn list(client: &Client, mut query: DeviceQuery, all: bool) -> anyhow::Result<Vec<Device>> {
    let mut items = Vec::new();
    loop {
        let page = client.devices(&query).await?;
        items.extend(page.items);
        match page.next_cursor {
            Some(c) if all => query.cursor = Some(c),
            Some(_) => {
                eprintln!("(more devices on the server: pass --all, or narrow the filters)");
                return Ok(items);
            }
            None => return Ok(items),
        }
    }
}

/// The id of the device `key` names: `key` itself when it is a device's id, else the one device
/// whose serial or name is exactly `key`.
pub async fn resolve(client: &Client, key: &str) -> anyhow::Result<String> {
    match client.device(key).await {
        Ok(device) => return Ok(device.id),
        Err(ClientError::Api { status, .. }) if status.as_u16() == 404 => {}
        Err(e) => return Err(e.into()),
    }
    let query = DeviceQuery { q: Some(key.to_owned()), limit: Some(500), ..DeviceQuery::default() };
    let found: Vec<Device> = client
        .devices(&query)
        .await?
        .items
        .into_iter()
        .filter(|d| d.serial.as_deref() == Some(key) || d.name == key)
        .collect();
    match found.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => anyhow::bail!("no device has the id, serial or name `{key}`"),
        many => {
            let ids: Vec<&str> = many.iter().map(|d| d.id.as_str()).collect();
            anyhow::bail!("{} devices are called `{key}` ({}); name one by its id", many.len(), ids.join(", "))
        }
    }
}

/// `key=value` options (`--label`) as a map.
pub fn parse_labels(labels: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    labels
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("--label `{l}` must look like key=value"))
        })
        .collect()
}

impl Tabular for Device {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "SERIAL", "STATUS", "ONLINE", "LAST SEEN", "OS", "TRANSPORT", "LABELS"]
    }
    fn row(&self) -> Vec<String> {
        let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        vec![
            self.id.clone(),
            self.name.clone(),
            or_dash(&self.serial),
            self.status.as_str().to_owned(),
            if self.connectivity.online { "yes" } else { "no" }.to_owned(),
            ago(self.connectivity.last_seen_at),
            or_dash(&self.os_family),
            or_dash(&self.transport),
            labels.join(","),
        ]
    }
}

impl Tabular for Inventory {
    fn headers() -> &'static [&'static str] {
        &[
            "HOSTNAME",
            "OS",
            "KERNEL",
            "ARCHITECTURE",
            "CPU",
            "MEMORY",
            "DISKS",
            "NETWORK",
            "HARDWARE",
            "SERIAL",
            "AGENT",
        ]
    }
    fn row(&self) -> Vec<String> {
        let os = [&self.os_name, &self.os_version].into_iter().flatten().cloned().collect::<Vec<_>>().join(" ");
        let cpu = match (&self.cpu_model, self.cpu_cores) {
            (Some(model), Some(n)) => format!("{model} ({n} cores)"),
            (Some(model), None) => model.clone(),
            (None, Some(n)) => format!("{n} cores"),
            (None, None) => "-".into(),
        };
        let disks: Vec<String> =
            self.disks.iter().map(|d| format!("{} {}", d.mount_point, bytes(d.total_bytes))).collect();
        let network: Vec<String> = self
            .network_interfaces
            .iter()
            .map(|n| format!("{} {}", n.name, n.addresses.join(" ")).trim().to_owned())
            .collect();
        let hardware = [&self.manufacturer, &self.model].into_iter().flatten().cloned().collect::<Vec<_>>().join(" ");
        vec![
            or_dash(&self.hostname),
            if os.is_empty() { or_dash(&self.os_family) } else { os },
            or_dash(&self.kernel_version),
            or_dash(&self.architecture),
            cpu,
            self.memory_bytes.map_or_else(|| "-".into(), bytes),
            if disks.is_empty() { "-".into() } else { disks.join(", ") },
            if network.is_empty() { "-".into() } else { network.join(", ") },
            if hardware.is_empty() { "-".into() } else { hardware },
            or_dash(&self.serial),
            or_dash(&self.agent_version),
        ]
    }
}

/// A byte count in binary units, e.g. `7.6 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}
