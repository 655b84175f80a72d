//! `baton groups …`: nestable groups of devices.

use baton_client::Client;
use baton_proto::api::{
    devices::DeviceQuery,
    groups::{Group, GroupCreate, GroupQuery, GroupUpdate},
};

use super::{
    Global,
    access::done,
    output::{self, Tabular, ago, or_dash},
};

#[derive(clap::Subcommand)]
pub enum GroupsCommand {
    /// List groups.
    List {
        /// Only children of this group id (`root` for top-level groups).
        #[arg(long)]
        parent: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one group.
    Get { id: String },
    /// Create a group.
    Create {
        name: String,
        /// Parent group id.
        #[arg(long)]
        parent: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Move a group under another (or to the top with --root).
    Move {
        id: String,
        #[arg(long, conflicts_with = "root", required_unless_present = "root")]
        parent: Option<String>,
        #[arg(long)]
        root: bool,
    },
    /// Rename a group.
    Rename { id: String, name: String },
    /// Delete a group without subgroups (its devices stay).
    Delete { id: String },
    /// List a group's devices (subgroups included unless --direct).
    Members {
        id: String,
        #[arg(long)]
        direct: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Add devices to a group.
    Add {
        id: String,
        #[arg(required = true)]
        devices: Vec<String>,
    },
    /// Remove devices from a group.
    Remove {
        id: String,
        #[arg(required = true)]
        devices: Vec<String>,
    },
}

pub async fn run(cmd: GroupsCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        GroupsCommand::List { parent, limit } => {
            let page = client.groups(&GroupQuery { parent, limit: Some(limit), ..Default::default() }).await?;
            output::more_rows(&page.next_cursor);
            output::list(g.output, &page.items)
        }
        GroupsCommand::Get { id } => output::one(g.output, &client.group(&id).await?),
        GroupsCommand::Create { name, parent, description } => {
            let group = client
                .create_group(&GroupCreate { name, description, parent_id: parent, ..Default::default() })
                .await?;
            output::one(g.output, &group)
        }
        GroupsCommand::Move { id, parent, root: _ } => {
            let group =
                client.update_group(&id, &GroupUpdate { parent_id: Some(parent), ..Default::default() }).await?;
            output::one(g.output, &group)
        }
        GroupsCommand::Rename { id, name } => {
            let group = client.update_group(&id, &GroupUpdate { name: Some(name), ..Default::default() }).await?;
            output::one(g.output, &group)
        }
        GroupsCommand::Delete { id } => {
            client.delete_group(&id).await?;
            done(g.output, &format!("deleted group {id}"))
        }
        GroupsCommand::Members { id, direct, limit } => {
            let query = DeviceQuery { recursive: direct.then_some(false), limit: Some(limit), ..Default::default() };
            let page = client.group_members(&id, &query).await?;
            output::more_rows(&page.next_cursor);
            output::list(g.output, &page.items)
        }
        GroupsCommand::Add { id, devices } => {
            let n = client.add_group_members(&id, devices).await?.changed;
            done(g.output, &format!("added {n} device(s) to group {id}"))
        }
        GroupsCommand::Remove { id, devices } => {
            let n = client.remove_group_members(&id, devices).await?.changed;
            done(g.output, &format!("removed {n} device(s) from group {id}"))
        }
    }
}

impl Tabular for Group {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "PARENT", "DEVICES", "UPDATED"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            or_dash(&self.parent_id),
            self.device_count.to_string(),
            ago(Some(self.updated_at)),
        ]
    }
}
