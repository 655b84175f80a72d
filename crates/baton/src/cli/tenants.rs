//! `baton tenants …`: platform administrators manage tenants.

use baton_client::Client;
use baton_proto::api::{
    access::{PageQuery, UserCreate},
    tenants::{Tenant, TenantCreate, TenantUpdate},
};

use super::{
    Global,
    output::{self, Tabular, ago, or_dash},
};

#[derive(clap::Subcommand)]
pub enum TenantsCommand {
    /// List tenants.
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one tenant.
    Get { id: String },
    /// Create a tenant, optionally with its first admin (password from standard input).
    Create {
        name: String,
        #[arg(long)]
        display_name: Option<String>,
        /// Username of the tenant's first administrator; the password is read from standard input.
        #[arg(long)]
        admin: Option<String>,
    },
    /// Disable a tenant: its users and tokens are refused.
    Disable { id: String },
    /// Enable a disabled tenant.
    Enable { id: String },
}

pub async fn run(cmd: TenantsCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        TenantsCommand::List { limit } => {
            let page = client.tenants(&PageQuery { limit: Some(limit), cursor: None }).await?;
            output::more_rows(&page.next_cursor);
            output::list(g.output, &page.items)
        }
        TenantsCommand::Get { id } => output::one(g.output, &client.tenant(&id).await?),
        TenantsCommand::Create { name, display_name, admin } => {
            let admin = match admin {
                Some(username) => {
                    let mut password = String::new();
                    std::io::stdin().read_line(&mut password)?;
                    let password = password.trim_end_matches(['\r', '\n']).to_owned();
                    anyhow::ensure!(!password.is_empty(), "--admin: give the admin's password on standard input");
                    Some(UserCreate { username, password, role: Some("admin".into()) })
                }
                None => None,
            };
            output::one(g.output, &client.create_tenant(&TenantCreate { name, display_name, admin }).await?)
        }
        TenantsCommand::Disable { id } => {
            let t = client.update_tenant(&id, &TenantUpdate { disabled: Some(true), ..Default::default() }).await?;
            output::one(g.output, &t)
        }
        TenantsCommand::Enable { id } => {
            let t = client.update_tenant(&id, &TenantUpdate { disabled: Some(false), ..Default::default() }).await?;
            output::one(g.output, &t)
        }
    }
}

impl Tabular for Tenant {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "DISPLAY NAME", "DISABLED", "CREATED"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            or_dash(&self.display_name),
            self.disabled.to_string(),
            ago(Some(self.created_at)),
        ]
    }
}
