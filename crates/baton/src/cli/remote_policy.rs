//! `baton remote-policy get | set`: the tenant's switch for remote sessions, and whether their
//! recordings keep keystrokes too.

use baton_client::Client;
use baton_proto::api::remote::RemotePolicy;

use super::{
    Global,
    output::{self, Tabular},
};

#[derive(clap::Subcommand)]
pub enum RemotePolicyCommand {
    /// Show the policy.
    Get,
    /// Change it; what is not given stays as it is.
    Set {
        /// Off: no remote session opens on any of the tenant's devices (open ones keep running).
        #[arg(long, action = clap::ArgAction::Set, value_name = "true|false")]
        enabled: Option<bool>,
        /// Record what operators type too. Keystrokes can hold passwords typed at prompts.
        #[arg(long, action = clap::ArgAction::Set, value_name = "true|false")]
        record_input: Option<bool>,
    },
}

pub async fn run(cmd: RemotePolicyCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        RemotePolicyCommand::Get => output::one(g.output, &client.remote_policy().await?),
        RemotePolicyCommand::Set { enabled, record_input } => {
            anyhow::ensure!(
                enabled.is_some() || record_input.is_some(),
                "say what to change: --enabled true|false and/or --record-input true|false"
            );
            let mut policy = client.remote_policy().await?;
            policy.enabled = enabled.unwrap_or(policy.enabled);
            policy.record_input = record_input.unwrap_or(policy.record_input);
            output::one(g.output, &client.set_remote_policy(&policy).await?)
        }
    }
}

impl Tabular for RemotePolicy {
    fn headers() -> &'static [&'static str] {
        &["ENABLED", "RECORD INPUT"]
    }
    fn row(&self) -> Vec<String> {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
        vec![yes_no(self.enabled), yes_no(self.record_input)]
    }
}
