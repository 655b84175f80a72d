//! `baton devices …`: the device registry.

use std::collections::BTreeMap;

use baton_client::Client;
use baton_proto::api::devices::{Device, DeviceCreate, DeviceQuery, DeviceUpdate};

use super::{
    Global,
    access::done,
    output::{self, Tabular, ago, or_dash},
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
    /// Retire a device: credentials revoked, history kept.
    Decommission { id: String },
    /// Delete a decommissioned device for good.
    Delete { id: String },
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
            let mut query = DeviceQuery {
                status: a.status,
                online: a.online,
                os: a.os,
                group: a.group,
                labels: a.labels,
                q: a.query,
                sort: a.sort,
                limit: Some(a.limit),
                ..DeviceQuery::default()
            };
            let mut items = Vec::new();
            loop {
                let page = client.devices(&query).await?;
                items.extend(page.items);
                match page.next_cursor {
                    Some(c) if a.all => query.cursor = Some(c),
                    Some(_) => {
                        eprintln!("(more devices on the server: pass --all, or narrow the filters)");
                        break;
                    }
                    None => break,
                }
            }
            output::list(g.output, &items)
        }
        DevicesCommand::Get { id } => output::one(g.output, &client.device(&id).await?),
        DevicesCommand::Create { serial, name, labels, groups } => {
            let labels = labels
                .iter()
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| anyhow::anyhow!("--label `{l}` must look like key=value"))
                })
                .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
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
        DevicesCommand::Decommission { id } => output::one(g.output, &client.decommission_device(&id).await?),
        DevicesCommand::Delete { id } => {
            client.delete_device(&id).await?;
            done(g.output, &format!("deleted device {id}"))
        }
    }
}

impl Tabular for Device {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "SERIAL", "STATUS", "ONLINE", "LAST SEEN", "OS", "LABELS"]
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
            labels.join(","),
        ]
    }
}
