//! `baton demo`: the server on the embedded database and a simulated fleet, in one process.
//! Through the API (with a random bootstrap token), it makes groups "Europe" > "Berlin" and
//! "Paris" and an enrollment token labelling devices `demo=true`, starts the devices (a few
//! fail their commands; remote terminals on them run `/bin/sh` here unless `--no-terminal`),
//! spreads them over the groups and says how to sign in.
//!
//! Starting again on the same data directory carries on: the groups are found by name, a new
//! enrollment token replaces the last one (its secret was never kept), and the devices enroll
//! again with the same serials, so the server knows them as the same devices. A generated admin
//! password is kept in the data directory (readable by its owner only), so every start can
//! show it; one from `BATON_ADMIN_PASSWORD` is never written down.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, path::PathBuf, time::Duration};

use baton_client::Client;
use baton_proto::api::{
    access::PageQuery,
    devices::{Device, DeviceQuery},
    enrollment::EnrollmentTokenCreate,
    groups::{GroupCreate, GroupQuery},
};
use baton_server::{App, Settings};
use rand::{Rng, distr::Alphanumeric};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::process::{init_tracing, shutdown_signal};
use crate::sim::{FleetConfig, Progress, run_fleet};

/// Serials of the demo's devices: `demo-00001`, ….
const PREFIX: &str = "demo";
/// About 3 of 25 devices fail their commands.
const FAIL_RATE: f64 = 0.12;
const TOKEN_NAME: &str = "demo";
const PASSWORD_FILE: &str = "demo-admin-password";

#[derive(clap::Args, Serialize)]
pub struct DemoArgs {
    /// Address for the console, the API and the agents.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Where the demo keeps its data; start again with the same one to carry on.
    #[arg(long, default_value = "./baton-demo-data")]
    data_dir: PathBuf,
    /// How many simulated devices to run.
    #[arg(long, default_value_t = 25)]
    #[serde(skip)]
    devices: u32,
    /// Refuse remote terminals on the simulated devices (by default they run `/bin/sh` here).
    #[arg(long)]
    #[serde(skip)]
    no_terminal: bool,
}

/// The groups the demo spreads devices over.
struct Groups {
    europe: String,
    berlin: String,
    paris: String,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut settings = Settings::load(None, &args)?;
    init_tracing(settings.log_format, "warn");
    // The demo never writes into a database configured for a real server.
    settings.database_url = None;
    if std::env::var_os("BATON_TELEMETRY_INTERVAL_SECS").is_none() {
        settings.telemetry_interval_secs = 10;
    }
    let bootstrap_token = format!("bt_demo_{}", random(40));
    settings.bootstrap_token = Some(bootstrap_token.clone());
    // The simulated devices all connect from this machine's one address.
    settings.max_connections_per_source = settings.max_connections_per_source.max(args.devices.saturating_add(100));
    let env_password = std::env::var("BATON_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty());
    let saved = std::fs::read_to_string(args.data_dir.join(PASSWORD_FILE)).ok().map(|p| p.trim().to_owned());
    let candidate = env_password.clone().or(saved.clone()).unwrap_or_else(|| random(24));
    settings.admin_password = Some(candidate.clone());

    settings.mqtt_addr.set_ip(args.http_addr.ip());
    if settings.mqtt_enabled && std::net::TcpListener::bind(settings.mqtt_addr).is_err() {
        // Another broker has the port (often Mosquitto on 1883): the demo takes a free one.
        settings.mqtt_addr.set_port(0);
    }
    let app = App::build(settings).await?;
    let url = app.url();
    let mqtt_addr = app.mqtt_addr();
    let created_admin = app.bootstrap().created_admin;
    let signal = shutdown_signal()?;
    let (server_stop, server_stopped) = oneshot::channel::<()>();
    let mut server = tokio::spawn(app.run_until_stopped(async move {
        let _ = server_stopped.await;
    }));
    if created_admin && env_password.is_none() {
        save_password(&args.data_dir.join(PASSWORD_FILE), &candidate)?;
    }
    let client = Client::new(&url, Some(bootstrap_token), None)?;
    let mut password = created_admin.then(|| candidate.clone());
    for known in [env_password, saved].into_iter().flatten() {
        if password.is_none() && client.login(None, "admin", &known).await.is_ok() {
            password = Some(known);
        }
    }
    let password = password
        .unwrap_or_else(|| "(the one set at the first start; BATON_ADMIN_PASSWORD does not change it)".to_owned());

    let groups = ensure_groups(&client).await?;
    // The simulated devices' logs, files and support bundles stay in here.
    let sandbox = std::path::absolute(args.data_dir.join("devices"))?;
    let token = renew_token(&client).await?;
    let config = FleetConfig {
        server: url.clone(),
        enrollment_token: token,
        devices: args.devices,
        prefix: PREFIX.into(),
        fail_rate: FAIL_RATE,
        flap_rate: 0.0,
        connect_rate: 200,
        ca_cert: None,
        terminal: !args.no_terminal,
        sandbox: Some(sandbox.clone()),
    };
    let failing = (1..=u64::from(args.devices)).filter(|&i| config.failing(i)).count();
    let (progress_tx, mut progress) = watch::channel(Progress::default());
    let (fleet_stop, fleet_stopped) = oneshot::channel::<()>();
    let fleet = tokio::spawn(run_fleet(config, progress_tx, async move {
        let _ = fleet_stopped.await;
    }));
    let settled = progress.wait_for(|p| p.counts.settled(args.devices));
    if tokio::time::timeout(Duration::from_secs(60), settled).await.is_err() {
        eprintln!("Some devices are still connecting; the groups get those enrolled so far.");
    }
    let placed = place_devices(&client, &groups).await?;
    let (mqtt_stop, mqtt_stopped) = watch::channel(false);
    let mqtt_devices = match mqtt_addr {
        Some(addr) => super::demo_mqtt::start(&client, addr, mqtt_stopped).await,
        None => 0,
    };

    say!();
    say!("Baton demo: {} simulated device(s), {failing} of them failing every command", args.devices);
    say!("  Console and API:  {url}");
    say!("  API docs:         {url}/api/docs");
    if let Some(addr) = mqtt_addr {
        say!("  MQTT:             {addr} — {mqtt_devices} simulated device(s) without the agent (docs/mqtt.md)");
    }
    say!("  Sign in:          user `admin`, password {password}");
    say!("  CLI:              baton login --server {url}");
    say!("  Try:              baton devices list -l demo=true");
    say!("                    baton commands send -l demo=true --wait exec -- uname -a");
    if !args.no_terminal {
        say!("                    baton terminal {PREFIX}-00001   (a shell on this machine, as this user)");
    }
    say!(
        "                    baton logs {PREFIX}-00001 -f --file {}",
        sandbox.join(format!("{PREFIX}-00001/logs/app.log")).display()
    );
    if placed > 0 {
        say!("Put {placed} device(s) in the groups Europe, Berlin and Paris.");
    }
    say!("Data in {}; start again to carry on. Ctrl-C stops the demo.", args.data_dir.display());

    tokio::select! {
        () = signal => {}
        ended = &mut server => {
            ended??;
            anyhow::bail!("the server stopped unexpectedly");
        }
    }
    let _ = fleet_stop.send(());
    let _ = mqtt_stop.send(true);
    fleet.await??;
    settle_offline(&client).await;
    let _ = server_stop.send(());
    server.await??;
    Ok(())
}

/// Finds the demo's groups by name, creating those that are missing.
async fn ensure_groups(client: &Client) -> anyhow::Result<Groups> {
    let europe = ensure_group(client, "Europe", None).await?;
    let berlin = ensure_group(client, "Berlin", Some(&europe)).await?;
    let paris = ensure_group(client, "Paris", Some(&europe)).await?;
    Ok(Groups { europe, berlin, paris })
}

async fn ensure_group(client: &Client, name: &str, parent: Option<&String>) -> anyhow::Result<String> {
    let query = GroupQuery { q: Some(name.into()), limit: Some(500), ..GroupQuery::default() };
    if let Some(group) = client.groups(&query).await?.items.into_iter().find(|g| g.name == name) {
        return Ok(group.id);
    }
    let req = GroupCreate {
        name: name.into(),
        description: Some("Made by `baton demo`".into()),
        parent_id: parent.cloned(),
        ..Default::default()
    };
    Ok(client.create_group(&req).await?.id)
}

/// Revokes the demo's earlier enrollment tokens (their secrets are gone) and makes a new one.
async fn renew_token(client: &Client) -> anyhow::Result<String> {
    let mut cursor = None;
    loop {
        let page = client.enrollment_tokens(&PageQuery { limit: Some(500), cursor }).await?;
        for token in page.items.iter().filter(|t| t.name == TOKEN_NAME && t.revoked_at.is_none()) {
            client.revoke_enrollment_token(&token.id).await?;
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let req = EnrollmentTokenCreate {
        name: TOKEN_NAME.into(),
        labels: BTreeMap::from([("demo".to_owned(), "true".to_owned())]),
        ..EnrollmentTokenCreate::default()
    };
    Ok(client.create_enrollment_token(&req).await?.secret)
}

/// Puts demo devices that are in no group yet into Berlin, Paris or Europe itself (by index, so
/// the same device lands in the same place every time); returns how many were placed.
async fn place_devices(client: &Client, groups: &Groups) -> anyhow::Result<usize> {
    let mut by_group: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for device in demo_devices(client).await? {
        let index =
            device.serial.as_deref().and_then(|s| s.strip_prefix(PREFIX)?.strip_prefix('-')?.parse::<u64>().ok());
        let Some(index) = index.filter(|_| device.groups.is_empty()) else { continue };
        let group = match index % 5 {
            1 | 2 => &groups.berlin,
            3 | 4 => &groups.paris,
            _ => &groups.europe,
        };
        by_group.entry(group).or_default().push(device.id);
    }
    let mut placed = 0;
    for (group, ids) in by_group {
        for chunk in ids.chunks(500) {
            client.add_group_members(group, chunk.to_vec()).await?;
            placed += chunk.len();
        }
    }
    Ok(placed)
}

async fn demo_devices(client: &Client) -> anyhow::Result<Vec<Device>> {
    let (mut devices, mut cursor) = (Vec::new(), None);
    loop {
        let query = DeviceQuery { q: Some(format!("{PREFIX}-")), limit: Some(500), cursor, ..DeviceQuery::default() };
        let page = client.devices(&query).await?;
        devices.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            return Ok(devices);
        }
    }
}

/// Gives the server a moment to record that the devices went offline before it stops.
async fn settle_offline(client: &Client) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let query =
        DeviceQuery { q: Some(format!("{PREFIX}-")), online: Some(true), limit: Some(1), ..DeviceQuery::default() };
    while tokio::time::Instant::now() < deadline {
        match client.devices(&query).await {
            Ok(page) if !page.items.is_empty() => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => return,
        }
    }
}

fn random(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// Keeps a generated password for later starts, readable by its owner only.
fn save_password(path: &Path, password: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    writeln!(file, "{password}")?;
    Ok(())
}
