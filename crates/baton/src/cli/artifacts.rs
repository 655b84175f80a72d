//! `baton artifacts push|list|get|delete` and `baton signing-keys …`: artifacts for updates and
//! the keys that sign them. A push streams the file (any size) with a progress bar; the server
//! computes its hash and signs it with the tenant's key, or checks the offline signature given.

use std::path::PathBuf;

use anyhow::Context;
use baton_client::Client;
use baton_proto::api::artifacts::{
    Artifact, ArtifactKind, ArtifactQuery, ArtifactUpload, SigningKey, SigningKeyCreate,
};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncReadExt;

use super::{
    Global,
    output::{self, Tabular, ago, or_dash},
};

#[derive(clap::Subcommand)]
pub enum ArtifactsCommand {
    /// Upload a file as an artifact.
    #[command(disable_version_flag = true)]
    Push(Box<PushArgs>),
    /// List artifacts, newest first.
    List {
        /// Only artifacts of this name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one artifact.
    Get { id: String },
    /// Delete an artifact and its bytes.
    Delete { id: String },
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// The file to upload.
    file: PathBuf,
    #[arg(long)]
    name: String,
    #[arg(long)]
    version: String,
    /// file, package, agent or firmware.
    #[arg(long, default_value = "file", value_parser = parse_kind)]
    kind: ArtifactKind,
    /// OS families it is for, comma-separated (e.g. linux).
    #[arg(long)]
    os: Option<String>,
    /// Architectures it is for, comma-separated (e.g. x86_64,aarch64).
    #[arg(long)]
    arch: Option<String>,
    /// Device models it is for, comma-separated.
    #[arg(long)]
    models: Option<String>,
    /// A label selector devices must match, e.g. `tier=prod`.
    #[arg(long)]
    labels: Option<String>,
    /// Another artifact it needs installed, with a version range: `runtime>=2.1,<3`.
    #[arg(long)]
    depends: Option<String>,
    /// A signature made offline (base64), with --key-id.
    #[arg(long, requires = "key_id")]
    signature: Option<String>,
    #[arg(long, requires = "signature")]
    key_id: Option<String>,
}

fn parse_kind(s: &str) -> Result<ArtifactKind, String> {
    ArtifactKind::parse(s).ok_or_else(|| format!("`{s}` is not a kind: use file, package, agent or firmware"))
}

#[derive(clap::Subcommand)]
pub enum SigningKeysCommand {
    /// List the tenant's signing keys.
    List,
    /// Make a key the server holds and signs uploads with, or register a public key kept offline.
    Create {
        name: String,
        /// The ed25519 public key (base64) of a key you keep offline.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Revoke a key: it signs nothing more and its signatures are refused.
    Revoke { id: String },
}

pub async fn run(cmd: ArtifactsCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        ArtifactsCommand::Push(args) => {
            let artifact = push(*args, client).await?;
            output::one(g.output, &artifact)
        }
        ArtifactsCommand::List { name, limit } => {
            let page = client.artifacts(&ArtifactQuery { name, limit: Some(limit), cursor: None }).await?;
            output::more_rows(&page.next_cursor);
            output::list(g.output, &page.items)
        }
        ArtifactsCommand::Get { id } => output::one(g.output, &client.artifact(&id).await?),
        ArtifactsCommand::Delete { id } => {
            client.delete_artifact(&id).await?;
            say!("Deleted artifact {id}");
            Ok(())
        }
    }
}

pub async fn keys(cmd: SigningKeysCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        SigningKeysCommand::List => output::list(g.output, &client.signing_keys().await?),
        SigningKeysCommand::Create { name, public_key } => {
            output::one(g.output, &client.create_signing_key(&SigningKeyCreate { name, public_key }).await?)
        }
        SigningKeysCommand::Revoke { id } => output::one(g.output, &client.revoke_signing_key(&id).await?),
    }
}

/// Streams the file to the server, with a progress bar on stderr.
async fn push(args: PushArgs, client: &Client) -> anyhow::Result<Artifact> {
    let shown = args.file.display().to_string();
    let file = tokio::fs::File::open(&args.file).await.with_context(|| format!("cannot open {shown}"))?;
    let len = file.metadata().await.with_context(|| format!("cannot read {shown}"))?.len();
    anyhow::ensure!(len > 0, "{shown} is empty");
    // What would refuse the upload, asked before sending what may be gigabytes.
    let me = client.me().await?;
    anyhow::ensure!(
        me.permissions.iter().any(|p| p == "artifacts:write"),
        "your role `{}` may not upload artifacts (it needs artifacts:write)",
        me.role
    );
    let query = ArtifactQuery { name: Some(args.name.clone()), limit: Some(500), cursor: None };
    if client.artifacts(&query).await?.items.iter().any(|a| a.version == args.version) {
        anyhow::bail!("{} {} exists already; push it with another version", args.name, args.version);
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{} {}", args.name, args.version));
    let progress = bar.clone();
    let body = futures::stream::try_unfold(file, move |mut file| {
        let progress = progress.clone();
        async move {
            let mut buf = vec![0u8; 256 * 1024];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            progress.inc(n as u64);
            Ok(Some((buf, file)))
        }
    });
    let facts = ArtifactUpload {
        name: args.name,
        version: args.version,
        kind: args.kind,
        sha256: None,
        signature: args.signature,
        key_id: args.key_id,
        os: args.os,
        arch: args.arch,
        models: args.models,
        labels: args.labels,
        depends: args.depends,
        url: None,
        size: Some(len),
    };
    let uploaded = client.upload_artifact(&facts, len, body).await;
    bar.finish_and_clear();
    Ok(uploaded?)
}

impl Tabular for Artifact {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "VERSION", "KIND", "SIZE", "SHA256", "SIGNED BY", "CREATED"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.version.clone(),
            self.kind.as_str().to_owned(),
            indicatif::HumanBytes(self.size).to_string(),
            self.sha256.chars().take(16).collect::<String>() + "…",
            or_dash(&self.signature.as_ref().map(|s| s.key_id.clone())),
            ago(Some(self.created_at)),
        ]
    }
}

impl Tabular for SigningKey {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "HELD BY", "PUBLIC KEY", "CREATED", "REVOKED"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            if self.held_by_server { "server" } else { "offline" }.to_owned(),
            self.public_key.clone(),
            ago(Some(self.created_at)),
            if self.revoked_at.is_some() { ago(self.revoked_at) } else { "–".to_owned() },
        ]
    }
}
