//! `baton cp <local> <device>:<path>` and `baton cp <device>:<path> <local>`: a file up to a
//! device, a file or a directory (unpacked from the server's tar stream) down from one, through
//! the server's file routes. Both directions check the SHA-256 end to end and resume after a
//! cut: an upload asks the device how much it kept (`files/stat?upload_sha256=`) and sends the
//! rest; a download grows `<local>.baton-part` with `Range` + `If-Range`. A cut connection is
//! retried (`--retries`), and a rerun resumes too unless `--no-resume`.

mod download;
mod upload;

use std::path::PathBuf;

use baton_client::{Client, ClientError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::devices;

#[derive(clap::Args)]
pub struct CpArgs {
    /// What to copy: a local file, or `<device>:<absolute path>` (device by id, serial or name).
    source: String,
    /// Where to: `<device>:<absolute path>` (a directory there takes the file's name), or a local
    /// path (an existing directory takes the remote name).
    destination: String,
    /// Start over instead of resuming what an interrupted copy left.
    #[arg(long)]
    no_resume: bool,
    /// Times a cut transfer is resumed before giving up.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Permission bits for an uploaded file, in octal (default: the local file's).
    #[arg(long, value_name = "OCTAL")]
    mode: Option<String>,
}

/// One side of a copy.
enum Side {
    Local(PathBuf),
    Remote { device: String, path: String },
}

impl Side {
    /// `device:/path` is a device's (a local path with a colon needs `./` in front).
    fn parse(text: &str) -> Side {
        match text.split_once(':') {
            Some((device, path)) if !device.is_empty() && !device.contains(['/', '\\']) && path.starts_with('/') => {
                Side::Remote { device: device.to_owned(), path: path.to_owned() }
            }
            _ => Side::Local(PathBuf::from(text)),
        }
    }
}

/// What a copy needs besides its ends.
pub(super) struct Options {
    resume: bool,
    retries: u32,
    mode: Option<String>,
}

pub async fn run(args: CpArgs, client: &Client) -> anyhow::Result<()> {
    let options = Options { resume: !args.no_resume, retries: args.retries, mode: args.mode };
    match (Side::parse(&args.source), Side::parse(&args.destination)) {
        (Side::Local(local), Side::Remote { device, path }) => {
            let id = devices::resolve(client, &device).await?;
            upload::run(client, &local, &id, &device, &path, &options).await
        }
        (Side::Remote { device, path }, Side::Local(local)) => {
            let id = devices::resolve(client, &device).await?;
            download::run(client, &id, &device, &path, &local, &options).await
        }
        (Side::Local(_), Side::Local(_)) => {
            anyhow::bail!("neither side is on a device: name one as <device>:/absolute/path")
        }
        (Side::Remote { .. }, Side::Remote { .. }) => {
            anyhow::bail!("both sides are on devices: copy through a local file")
        }
    }
}

/// Whether a failed attempt is worth resuming: the connection was cut, the body ended early,
/// or the device's connection ended meanwhile.
fn retriable(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Unreachable { .. }) => true,
        Some(ClientError::Api { status, problem }) => {
            status.as_u16() == 400 && problem.kind.ends_with("/incomplete-upload")
                || status.as_u16() == 409 && problem.detail.as_deref().is_some_and(|d| d.contains("connection ended"))
        }
        _ => e.downcast_ref::<Cut>().is_some(),
    }
}

/// The transfer stopped part-way (the bytes so far are kept for a resume).
#[derive(Debug)]
struct Cut(String);

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cut {}

/// A progress bar of bytes on stderr (hidden when stderr is not a terminal).
fn progress(total: Option<u64>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = match total {
        Some(_) => "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
        None => "{msg} {spinner} {bytes} {binary_bytes_per_sec}",
    };
    let style = ProgressStyle::with_template(template).map(|s| s.progress_chars("=> "));
    bar.set_style(style.unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message(what.to_owned());
    bar
}

/// The hex SHA-256 of a local file, read on a blocking thread.
async fn sha256_of(path: &std::path::Path) -> anyhow::Result<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use sha2::Digest;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(format!("{:x}", hasher.finalize()))
    })
    .await?
}

/// A byte count for people.
fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
