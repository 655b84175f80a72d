//! `baton enrollment-tokens …`: tokens that let devices enroll themselves. The secret of a new
//! token is printed once, with the `baton-agent enroll` line to put in a factory image.

use baton_client::Client;
use baton_proto::api::{
    access::PageQuery,
    enrollment::{EnrollmentToken, EnrollmentTokenCreate, EnrollmentTokenCreated},
};
use serde::Serialize;

use super::{
    Global,
    access::PageArgs,
    devices::parse_labels,
    output::{self, Format, Tabular, ago, or_dash},
};

#[derive(clap::Subcommand)]
pub enum EnrollmentTokensCommand {
    /// List enrollment tokens (never their secrets).
    List(PageArgs),
    /// Create an enrollment token; its secret is printed once.
    Create {
        name: String,
        /// Group id enrolled devices are put in, repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// key=value label enrolled devices get, repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Unknown serials wait in `pending` until approved.
        #[arg(long)]
        requires_approval: bool,
        /// How many devices may enroll with it (default: no limit).
        #[arg(long)]
        max_uses: Option<u32>,
        /// Hours until it expires (default: never).
        #[arg(long)]
        expires_in_hours: Option<u32>,
    },
    /// Show one enrollment token.
    Get { id: String },
    /// Revoke an enrollment token: enrolled devices stay, new enrollments are refused.
    Revoke { id: String },
}

/// A new token as scripts see it: the token, its secret and the agent's command line.
#[derive(Serialize)]
struct Created<'a> {
    #[serde(flatten)]
    created: &'a EnrollmentTokenCreated,
    enroll_command: String,
}

pub async fn run(cmd: EnrollmentTokensCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        EnrollmentTokensCommand::List(p) => {
            let page = client.enrollment_tokens(&PageQuery { limit: Some(p.limit), cursor: None }).await?;
            output::more_rows(&page.next_cursor);
            output::list(g.output, &page.items)
        }
        EnrollmentTokensCommand::Create { name, groups, labels, requires_approval, max_uses, expires_in_hours } => {
            let labels = parse_labels(&labels)?;
            let req = EnrollmentTokenCreate { name, groups, labels, requires_approval, max_uses, expires_in_hours };
            let created = client.create_enrollment_token(&req).await?;
            let enroll_command = format!(
                "baton-agent enroll --server {} --token {}",
                shell_word(client.base_url()),
                shell_word(&created.secret)
            );
            match g.output {
                Format::Table => {
                    eprintln!(
                        "Created enrollment token {} ({}); store the secret now, it is not shown again:",
                        created.token.name, created.token.id
                    );
                    println!("{}", created.secret);
                    eprintln!("Enroll a device with:\n  {enroll_command}");
                    Ok(())
                }
                f => output::structured(f, &Created { created: &created, enroll_command }),
            }
        }
        EnrollmentTokensCommand::Get { id } => output::one(g.output, &client.enrollment_token(&id).await?),
        EnrollmentTokensCommand::Revoke { id } => output::one(g.output, &client.revoke_enrollment_token(&id).await?),
    }
}

/// `text` as one word for a POSIX shell: as is when plainly safe, else single-quoted.
fn shell_word(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

impl Tabular for EnrollmentToken {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "USES", "APPROVAL", "GROUPS", "LABELS", "CREATED BY", "EXPIRES", "REVOKED"]
    }
    fn row(&self) -> Vec<String> {
        let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        vec![
            self.id.clone(),
            self.name.clone(),
            match self.max_uses {
                Some(max) => format!("{}/{max}", self.uses),
                None => self.uses.to_string(),
            },
            if self.requires_approval { "required" } else { "automatic" }.to_owned(),
            self.groups.len().to_string(),
            labels.join(","),
            or_dash(&self.created_by),
            ago(self.expires_at),
            ago(self.revoked_at),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("https://baton.example.com:8443"), "https://baton.example.com:8443");
        assert_eq!(shell_word("be_AbC-123"), "be_AbC-123");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
