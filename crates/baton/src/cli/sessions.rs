//! `baton sessions list | get | close`: a device's remote sessions (opened by `baton terminal`,
//! the console or the API) — who opened them from where, their state, why they ended — and
//! closing one that is open (its client and watchers are told who closed it).

use baton_client::Client;
use baton_proto::api::{access::PageQuery, remote::RemoteSession};

use super::{
    Global, devices,
    output::{self, Tabular, ago, or_dash},
};

#[derive(clap::Subcommand)]
pub enum SessionsCommand {
    /// A device's sessions, newest first.
    List {
        /// The device: its id, serial or name.
        device: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One session.
    Get { device: String, session: String },
    /// Close an open session: the shell on the device ends, its client is told who closed it.
    Close { device: String, session: String },
}

pub async fn run(cmd: SessionsCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        SessionsCommand::List { device, limit } => {
            let device = devices::resolve(client, &device).await?;
            let page = client.sessions(&device, &PageQuery { limit: Some(limit), cursor: None }).await?;
            output::more_rows(&page.next_cursor);
            output::list(g.output, &page.items)
        }
        SessionsCommand::Get { device, session } => {
            let device = devices::resolve(client, &device).await?;
            output::one(g.output, &client.session(&device, &session).await?)
        }
        SessionsCommand::Close { device, session } => {
            let device = devices::resolve(client, &device).await?;
            output::one(g.output, &client.close_session(&device, &session).await?)
        }
    }
}

impl Tabular for RemoteSession {
    fn headers() -> &'static [&'static str] {
        &["ID", "STATE", "OPENED BY", "FROM", "WHAT", "CREATED", "CLOSED", "REASON", "EXIT", "RECORDING"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.state.as_str().to_owned(),
            self.opened_by.clone(),
            or_dash(&self.source_addr),
            self.what(),
            ago(Some(self.created_at)),
            ago(self.closed_at),
            or_dash(&self.close_reason),
            self.exit_code.map_or_else(|| "-".to_owned(), |c| c.to_string()),
            self.recording.as_ref().map_or_else(|| "-".to_owned(), |r| super::recordings::size(r.size_bytes)),
        ]
    }
}
