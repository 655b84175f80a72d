//! `baton rollouts create`: the flags of a rollout and how they become a [`RolloutCreate`].
//! The artifact is an id or `NAME@VERSION` and groups are ids or names, resolved here so a typo
//! is named before anything is made. Waves, shares, durations and the installer line are read
//! here too ([`super::values`]) rather than by clap, so a bad value is one line naming the flag.

use baton_client::Client;
use baton_proto::api::{
    artifacts::{Artifact, ArtifactQuery},
    rollouts::{FailureGate, GateAction, InstallSpec, RetryPolicy, RolloutCreate, SuccessGate, Targets, Wave},
};

use super::values::{percent, read, secs, split_words};
use super::{show, watch};
use crate::cli::{Global, import::group_id, output::Format};

/// What to install, on which devices, in which waves, and when to stop.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["groups", "labels", "devices"])))]
pub struct CreateArgs {
    /// The artifact: its id, or NAME@VERSION.
    artifact: String,
    /// Default: the artifact's name and version.
    #[arg(long)]
    name: Option<String>,
    /// A group, by id or name (its subgroups included); repeatable.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Devices matching a label selector, e.g. 'tier=prod,store!=test'.
    #[arg(long, short = 'l')]
    labels: Option<String>,
    /// A device id; repeatable.
    #[arg(long = "device")]
    devices: Vec<String>,
    /// Where each wave ends, in shares or counts from the start: `10%,50%,100%` or `5,50%,100%`.
    /// Default: one wave of every device.
    #[arg(long, value_name = "WAVES")]
    waves: Option<String>,
    /// Share of a wave that must succeed before the next starts (default 100).
    #[arg(long, value_name = "PERCENT")]
    success_percent: Option<String>,
    /// Time to wait after a wave succeeded before the next: seconds, or 10m, 2h, 1d.
    #[arg(long, value_name = "DURATION")]
    bake: Option<String>,
    /// Pause after each wave until someone approves the next (`baton rollouts resume`).
    #[arg(long)]
    approval: bool,
    /// Stop when this share of finished executions failed (default 20, unless --fail-count).
    #[arg(long, value_name = "PERCENT")]
    fail_percent: Option<String>,
    /// Stop when this many executions failed.
    #[arg(long, value_name = "N")]
    fail_count: Option<u32>,
    /// Executions that must have finished before the failure gate judges (default 5).
    #[arg(long, value_name = "N")]
    min_executed: Option<u32>,
    /// What the failure gate does.
    #[arg(long, value_enum, default_value_t = OnFailure::Pause)]
    on_failure: OnFailure,
    /// Attempts per device for retryable failures, the first included (default 3).
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// Wait before the second attempt, doubled each attempt after: seconds, or 1m, 1h (default 60s).
    #[arg(long, value_name = "DURATION")]
    backoff: Option<String>,
    /// The longest wait between attempts (default 1h).
    #[arg(long, value_name = "DURATION")]
    max_backoff: Option<String>,
    /// Devices downloading or installing at once, at most.
    #[arg(long, value_name = "N")]
    max_in_flight: Option<u32>,
    /// For a file artifact: the absolute path it is installed at.
    #[arg(long)]
    path: Option<String>,
    /// For a file artifact: permission bits in octal, e.g. 0755.
    #[arg(long)]
    mode: Option<String>,
    /// For a file artifact: `user` or `user:group`.
    #[arg(long)]
    owner: Option<String>,
    /// The installer, as one shell-quoted line; `{file}` is the downloaded file,
    /// e.g. 'dpkg -i {file}'. Default: the agent's installer for the artifact's kind.
    #[arg(long, value_name = "LINE")]
    install_command: Option<String>,
    /// Time the device watches its health after installing: seconds, or 2m.
    #[arg(long, value_name = "DURATION")]
    verify: Option<String>,
    /// Let devices go to a lower version than they have.
    #[arg(long)]
    allow_downgrade: bool,
    /// What a rollback installs, as an id or NAME@VERSION (default: the newest earlier version).
    #[arg(long, value_name = "ARTIFACT")]
    rollback_to: Option<String>,
    /// Keep the rollout as a draft; start it with `baton rollouts start`.
    #[arg(long, conflicts_with = "watch")]
    draft: bool,
    /// Follow the rollout after making it, as `baton rollouts watch` does.
    #[arg(long)]
    watch: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnFailure {
    /// Stop notifying devices until someone resumes or cancels.
    Pause,
    /// Cancel every execution not finished.
    Abort,
    /// Give the devices that got the update the previous version back.
    Rollback,
}

pub async fn run(args: CreateArgs, client: &Client, g: &Global) -> anyhow::Result<()> {
    let watch_after = args.watch;
    let req = request(args, client).await?;
    let rollout = client.create_rollout(&req).await?;
    if !watch_after {
        return show(g.output, &rollout);
    }
    if g.output == Format::Table {
        let waves = rollout.progress.waves.len();
        eprintln!("Rollout {} made: {} device(s) in {waves} wave(s)", rollout.id, rollout.progress.devices);
    }
    watch::run(client, &rollout.id, g).await
}

/// The request: the flags' settings, then the artifact and groups they name, found by name.
async fn request(a: CreateArgs, client: &Client) -> anyhow::Result<RolloutCreate> {
    let mut req = settings(&a)?;
    let artifact = find_artifact(client, &a.artifact).await?;
    if let Some(given) = &a.rollback_to {
        req.rollback_artifact_id = Some(find_artifact(client, given).await?.id);
    }
    for group in &a.groups {
        req.targets.groups.push(group_by_id_or_name(client, group).await?);
    }
    req.name = a.name.unwrap_or_else(|| format!("{} {}", artifact.name, artifact.version));
    req.artifact_id = artifact.id;
    Ok(req)
}

/// What the flags say by themselves, read and checked before the server is asked anything.
fn settings(a: &CreateArgs) -> anyhow::Result<RolloutCreate> {
    let waves = match &a.waves {
        Some(text) => text.split(',').map(|w| Wave::parse(w).map_err(|e| anyhow::anyhow!("--waves: {e}"))).collect(),
        None => Ok(Vec::new()),
    }?;
    let success_gate = SuccessGate {
        percent: read(&a.success_percent, "--success-percent", percent)?.unwrap_or(100.0),
        bake_secs: read(&a.bake, "--bake", secs)?.unwrap_or(0),
        approval: a.approval,
    };
    let defaults = RetryPolicy::default();
    let backoff_secs = read(&a.backoff, "--backoff", secs)?.unwrap_or(defaults.backoff_secs);
    let retry = RetryPolicy {
        max_attempts: a.max_attempts.unwrap_or(defaults.max_attempts),
        backoff_secs,
        // A long --backoff alone raises the cap with it rather than being refused by it.
        max_backoff_secs: read(&a.max_backoff, "--max-backoff", secs)?
            .unwrap_or(defaults.max_backoff_secs.max(backoff_secs)),
    };
    let install = InstallSpec {
        path: a.path.clone(),
        mode: a.mode.clone(),
        owner: a.owner.clone(),
        command: read(&a.install_command, "--install-command", split_words)?.unwrap_or_default(),
        // The server refuses more than a day, saying so; saturating keeps that message.
        verify_secs: read(&a.verify, "--verify", secs)?.map(|s| s.try_into().unwrap_or(u32::MAX)),
    };
    Ok(RolloutCreate {
        targets: Targets { groups: Vec::new(), labels: a.labels.clone(), device_ids: a.devices.clone() },
        waves,
        success_gate,
        failure_gate: failure_gate(a)?,
        retry,
        max_in_flight: a.max_in_flight,
        install,
        allow_downgrade: a.allow_downgrade,
        start: !a.draft,
        ..Default::default()
    })
}

/// The default gate (20 % failed, judged after 5), with the thresholds given replacing both of
/// its thresholds: `--fail-count 3` alone stops at three failures, whatever their share.
fn failure_gate(a: &CreateArgs) -> anyhow::Result<FailureGate> {
    let mut gate = FailureGate::default();
    let failed_percent = read(&a.fail_percent, "--fail-percent", percent)?;
    if failed_percent.is_some() || a.fail_count.is_some() {
        (gate.failed_percent, gate.failed_count) = (failed_percent, a.fail_count);
    }
    gate.min_executed = a.min_executed.unwrap_or(gate.min_executed);
    gate.action = match a.on_failure {
        OnFailure::Pause => GateAction::Pause,
        OnFailure::Abort => GateAction::Abort,
        OnFailure::Rollback => GateAction::Rollback,
    };
    Ok(gate)
}

/// An artifact by id, or by `NAME@VERSION`.
async fn find_artifact(client: &Client, given: &str) -> anyhow::Result<Artifact> {
    let Some((name, version)) = given.rsplit_once('@') else {
        return match client.artifact(given).await {
            Err(e) if e.status().is_some_and(|s| s.as_u16() == 404) => anyhow::bail!(
                "no artifact has the id `{given}`: give an artifact id or NAME@VERSION (see `baton artifacts list`)"
            ),
            other => Ok(other?),
        };
    };
    let mut query = ArtifactQuery { name: Some(name.to_owned()), limit: Some(500), cursor: None };
    let mut versions = Vec::new();
    loop {
        let page = client.artifacts(&query).await?;
        if let Some(found) = page.items.iter().find(|a| a.version == version) {
            return Ok(found.clone());
        }
        versions.extend(page.items.into_iter().map(|a| a.version));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    if versions.is_empty() {
        anyhow::bail!("no artifact is named `{name}` (see `baton artifacts list`)");
    }
    let shown = versions.iter().take(5).map(String::as_str).collect::<Vec<_>>().join(", ");
    let more = if versions.len() > 5 { ", …" } else { "" };
    anyhow::bail!("artifact `{name}` has no version `{version}`; it has {shown}{more}")
}

/// A group's id, given its exact name or its id.
async fn group_by_id_or_name(client: &Client, given: &str) -> anyhow::Result<String> {
    if let Some(id) = group_id(client, given).await? {
        return Ok(id);
    }
    match client.group(given).await {
        Ok(group) => Ok(group.id),
        Err(e) if e.status().is_some_and(|s| s.is_client_error()) => {
            anyhow::bail!("--group: no group is named `{given}` or has that id (see `baton groups list`)")
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags of `create`, parsed as the command line would be.
    fn args(line: &[&str]) -> CreateArgs {
        #[derive(clap::Parser)]
        struct Create {
            #[command(flatten)]
            args: CreateArgs,
        }
        let argv = ["create", "motd@1.0", "--device", "d1"].iter().chain(line);
        <Create as clap::Parser>::try_parse_from(argv).expect("flags parse").args
    }

    #[test]
    fn flags_become_the_rollouts_settings_with_the_servers_defaults_for_the_rest() {
        let plain = settings(&args(&[])).expect("settings");
        assert_eq!(
            (plain.waves, plain.failure_gate, plain.retry),
            (vec![], FailureGate::default(), RetryPolicy::default())
        );
        assert!(plain.start);

        let line = ["--waves", "5,50%,100%", "--fail-count", "3", "--backoff", "2h", "--draft", "--verify", "2m"];
        let set = settings(&args(&line)).expect("settings");
        assert_eq!(set.waves, [Wave::Count(5), Wave::Percent(50.0), Wave::Percent(100.0)]);
        assert_eq!((set.failure_gate.failed_percent, set.failure_gate.failed_count), (None, Some(3)));
        assert_eq!((set.retry.backoff_secs, set.retry.max_backoff_secs), (7200, 7200));
        assert_eq!((set.start, set.install.verify_secs), (false, Some(120)));
        let wrong = settings(&args(&["--waves", "10%,abc"])).expect_err("bad wave").to_string();
        assert!(wrong.starts_with("--waves: `abc` is not a wave: give a share like `10%`"), "{wrong}");
    }
}
