//! `baton bench console`: how long the web console's pages take with a fleet's worth of data in
//! the database — 10,000 devices and a week of telemetry — beside the JSON API, in one run.
//!
//! 1. **The registry, through the API.** `baton serve` (release, embedded SQLite, fresh data
//!    dir) starts; the devices are imported through `POST /api/v1/devices/import` with varied
//!    labels (`site`, `tier`, `hw`, `ring`), and the device whose page is measured gets a few
//!    queued commands. The server is then stopped.
//! 2. **A week of telemetry, straight into the database file.** Through the API it would take
//!    the better part of an hour (the writer stores ≈ 30 k points/s), so the bench opens the
//!    same SQLite file with the server's own storage layer (`baton_core::store::Db`) and
//!    generates the rows in SQL, in time order as a live fleet would have written them (so one
//!    device's samples are spread over the table as in production, not stored side by side):
//!    every device three metrics (`cpu`, `mem`, `temp`) every `--interval-mins`, the measured
//!    device every `--hot-interval-secs`. Then what agents would have reported is set the same
//!    way: the latest values and last-seen time, and an inventory (OS, architecture, agent
//!    version) from a few profiles, so the OS filter and the overview's counts have something to
//!    do. No agent is connected: every device is offline.
//! 3. **The measurement.** The server starts again on the same file, the bench signs in as the
//!    admin (`POST /api/v1/auth/login`, the session cookie a browser would send) and times
//!    `--requests` GETs of each URL one after another after a few not counted, from sending the
//!    request until the whole body is read, over loopback (so the time is the server's, plus a
//!    fraction of a millisecond). The chart data (`/api/v1/devices/{id}/telemetry`) is what the
//!    device page's chart fetches; the JSON device list is the peer measured in the same run.
//!
//! Linux only (reads /proc for the server's RSS).

use std::time::{Duration, Instant};

use anyhow::Context;
use baton_client::Client;
use baton_core::store::{Db, sql::Sql};
use baton_proto::{
    api::{
        commands::{CommandCreate, CommandSpec, CommandTarget},
        devices::DeviceCreate,
        enrollment::DeviceImport,
    },
    inventory::{Disk, Inventory, NetworkInterface},
};
use chrono::{DateTime, SecondsFormat, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use super::{mib, proc};

#[derive(clap::Args)]
pub struct ConsoleArgs {
    /// Devices in the registry.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Days of telemetry, up to now.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Telemetry interval of every device, in minutes (three metrics each).
    #[arg(long, default_value_t = 15)]
    interval_mins: u32,
    /// Telemetry interval of the device whose page is measured, in seconds.
    #[arg(long, default_value_t = 10)]
    hot_interval_secs: u32,
    /// Timed requests per URL.
    #[arg(long, default_value_t = 200)]
    requests: usize,
}

/// Requests to each URL before timing starts (connections, caches).
const WARM_UP: usize = 10;
/// Devices per import request.
const IMPORT_BATCH: usize = 2_000;
/// "Next page" links followed for the later-page measurement.
const PAGES_DEEP: usize = 100;
const HOUR_MS: i64 = 3_600_000;
/// Telemetry generated per statement while seeding.
const CHUNK_MS: i64 = 6 * HOUR_MS;
const PASSWORD: &str = "bench-console-password";

pub async fn run(a: ConsoleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.devices > 50 && a.days >= 1 && a.requests >= 1, "--devices 51+, --days 1+, --requests 1+");
    anyhow::ensure!(a.interval_mins >= 1 && a.hot_interval_secs >= 1, "intervals must be at least 1");
    let data = tempfile::tempdir()?;
    let token = format!("bench-{}", super::uuid_like());
    let env = [("BATON_ADMIN_PASSWORD", PASSWORD.to_owned())];

    // 1. The registry, through the API.
    let (hot, other) = registry(data.path(), &token, &env, a.devices).await?;

    // 2. A week of telemetry and what the agents would have reported, into the file.
    let now = Utc::now();
    let seeded = Instant::now();
    let rows = seed(data.path(), &a, &hot, now.timestamp_millis()).await?;
    let seed_secs = seeded.elapsed().as_secs_f64();
    let db_gib = mib(std::fs::metadata(data.path().join("baton.db"))?.len()) / 1024.0;
    println!("{rows} telemetry rows in {seed_secs:.0} s; database {db_gib:.2} GiB");

    // 3. The measurement, on the same database.
    let server = super::start_server_in(data.path(), &token, &env)?;
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_secs(2)).await; // startup work (presence reset, first prune) done
    let rss_before = proc::rss_bytes(pid)?;
    let results = measure(&server.url, &hot, &other, now, &a).await?;
    let rss_after = proc::rss_bytes(pid)?;

    println!();
    println!(
        "{} devices; telemetry: {} days, 3 metrics every {} min per device, every {} s for the measured one: \
         {rows} rows, database {db_gib:.2} GiB, seeded in {seed_secs:.0} s",
        a.devices, a.days, a.interval_mins, a.hot_interval_secs
    );
    println!();
    println!("| request ({} timed, one at a time) | p50 | p95 | max | response |", a.requests);
    println!("|---|---|---|---|---|");
    for (what, path, t) in &results {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {what} `{}` | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} KiB |",
            shorten(path, &[&hot, &other]),
            ms(proc::percentile(&t.sorted, 50.0)),
            ms(proc::percentile(&t.sorted, 95.0)),
            ms(t.sorted.last().copied().unwrap_or_default()),
            t.bytes as f64 / 1024.0
        );
    }
    println!(
        "| server RSS before → after the requests | {:.1} MiB → {:.1} MiB | | | |",
        mib(rss_before),
        mib(rss_after)
    );
    Ok(())
}

/// Starts the server on `data_dir`, imports the devices and queues a few commands for the one
/// whose page is measured; stops the server. Returns that device and another one.
async fn registry(
    data_dir: &std::path::Path,
    token: &str,
    env: &[(&str, String)],
    devices: usize,
) -> anyhow::Result<(String, String)> {
    let server = super::start_server_in(data_dir, token, env)?;
    println!("server {} (pid {}), data dir {}", server.url, server.child.id(), data_dir.display());
    let client = Client::new(&server.url, Some(token.to_owned()), None)?;
    let ids = import(&client, devices).await?;
    let (hot, other) = (ids[0].clone(), ids[ids.len() / 2].clone());
    for _ in 0..20 {
        let target = CommandTarget { device_ids: vec![hot.clone()], ..Default::default() };
        let ping =
            CommandCreate { target, command: CommandSpec::Ping, ttl_secs: Some(7 * 86_400), idempotency_key: None };
        client.create_commands(&ping).await?;
    }
    Ok((hot, other))
}

/// Signs in as a browser would and times every URL: `(what, path, timing)`.
async fn measure(
    url: &str,
    hot: &str,
    other: &str,
    now: DateTime<Utc>,
    a: &ConsoleArgs,
) -> anyhow::Result<Vec<(String, String, Timing)>> {
    let session = Client::new(url, None, None)?.login(None, "admin", PASSWORD).await?;
    let cookie = format!("baton_session={}", session.token);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let get = Get { http: &http, base: url, cookie: &cookie };
    let depth = PAGES_DEEP.min((a.devices - 1) / 50);
    let deep = (depth + 1, follow_next(&get, "/devices?sort=name", depth).await?);
    let targets = targets(hot, other, deep, now);
    let bar = bar((targets.len() * a.requests) as u64, "requests timed");
    let mut results = Vec::with_capacity(targets.len());
    for (what, path) in targets {
        let timing = get.time(&path, a.requests, &bar).await?;
        results.push((what, path, timing));
    }
    bar.finish();
    Ok(results)
}

/// The URLs measured: `(what, path)`; `deep` is a later page of the devices and its number.
fn targets(hot: &str, other: &str, deep: (usize, String), now: DateTime<Utc>) -> Vec<(String, String)> {
    // As the device page's chart asks: one metric, averaged, its bucket width for each range.
    let chart = |id: &str, hours: i64, bucket_secs: u32| {
        let from = now - chrono::Duration::hours(hours);
        format!(
            "/api/v1/devices/{id}/telemetry?metric=cpu&agg=avg&from={}&to={}&bucket_secs={bucket_secs}",
            from.to_rfc3339_opts(SecondsFormat::Secs, true),
            now.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    };
    let labels = "site%3Dsite-07%2Ctier%3Dprod";
    let deep_what = format!("devices page, page {} (\"Next page\" links)", deep.0);
    [
        ("overview", "/".to_owned()),
        ("devices page, unfiltered", "/devices".to_owned()),
        ("devices page, label filter", format!("/devices?labels={labels}")),
        ("devices page, OS filter", "/devices?os=windows".to_owned()),
        ("devices page, search", "/devices?q=00420".to_owned()),
        ("devices page, sorted by last seen", "/devices?sort=-last_seen_at".to_owned()),
        (deep_what.as_str(), deep.1),
        ("device page (the measured device)", format!("/devices/{hot}")),
        ("chart data, 1 hour, 30 s buckets", chart(hot, 1, 30)),
        ("chart data, 1 day, 5 min buckets", chart(hot, 24, 300)),
        ("chart data, 1 week, 30 min buckets", chart(hot, 168, 1800)),
        ("chart data, 1 week, 30 min buckets, another device", chart(other, 168, 1800)),
        ("peer: JSON API, devices", "/api/v1/devices?limit=50".to_owned()),
        ("peer: JSON API, devices, label filter", format!("/api/v1/devices?limit=50&labels={labels}")),
        ("peer: JSON API, devices, sorted by last seen", "/api/v1/devices?limit=50&sort=-last_seen_at".to_owned()),
        ("peer: JSON API, one device", format!("/api/v1/devices/{hot}")),
    ]
    .into_iter()
    .map(|(what, path)| (what.to_owned(), path))
    .collect()
}

/// Imports the devices: names and labels varied so that filters select a few pages' worth.
async fn import(client: &Client, n: usize) -> anyhow::Result<Vec<String>> {
    let bar = bar(n as u64, "devices imported");
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(IMPORT_BATCH) {
        let devices = (start..(start + IMPORT_BATCH).min(n)).map(device).collect();
        ids.extend(client.import_devices(&DeviceImport { devices }).await?.into_iter().map(|d| d.id));
        bar.set_position(ids.len() as u64);
    }
    bar.finish();
    Ok(ids)
}

fn device(i: usize) -> DeviceCreate {
    let site = format!("site-{:02}", i % 47);
    let tier = match i / 7 % 10 {
        0..=6 => "prod",
        7 | 8 => "staging",
        _ => "test",
    };
    let labels = [
        ("site", site.clone()),
        ("tier", tier.to_owned()),
        ("hw", format!("rev-{}", ['a', 'b', 'c', 'd'][i % 4])),
        ("ring", (i % 5).to_string()),
    ];
    DeviceCreate {
        serial: format!("BT{i:07}"),
        name: Some(format!("{site}-{}-{i:05}", ["gw", "kiosk", "pos", "sensor"][i % 4])),
        manufacturer: Some("Acme".into()),
        model: Some(format!("Edge-{}", 100 * (1 + i % 3))),
        labels: labels.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        groups: Vec::new(),
    }
}

/// Writes the telemetry and the agents' reports into the stopped server's database; returns
/// the telemetry rows written.
async fn seed(data_dir: &std::path::Path, a: &ConsoleArgs, hot: &str, now_ms: i64) -> anyhow::Result<u64> {
    let db = Db::connect(None, data_dir, Default::default()).await?;
    // The writer pool holds one connection, so these stick; speed over durability while seeding.
    for pragma in ["PRAGMA synchronous = OFF", "PRAGMA cache_size = -1000000", "PRAGMA temp_store = MEMORY"] {
        Sql::new(pragma).query(db.backend()).execute(db.writer()).await?;
    }
    let fleet_step = i64::from(a.interval_mins) * 60_000;
    let start = now_ms - i64::from(a.days) * 24 * HOUR_MS;
    let series = Series {
        hot,
        fleet_step,
        hot_step: i64::from(a.hot_interval_secs) * 1000,
        spread_secs: i64::from(a.interval_mins) * 60,
        // The fleet's samples are offset by up to one interval per device, so theirs end one
        // interval before now; the measured device's go on until now.
        fleet_end: now_ms - fleet_step,
    };
    // About six hours per statement, a whole number of fleet intervals: every statement touches
    // a page of the series index per device and metric, so fewer, larger ones write less.
    let chunk = fleet_step * (CHUNK_MS / fleet_step).max(1);
    // The series keys the server's writer would have given: every device, three metrics.
    for keys in [
        "INSERT INTO telemetry_devices (device_id) SELECT id FROM devices WHERE true ORDER BY rowid \
         ON CONFLICT DO NOTHING",
        "INSERT INTO telemetry_metrics (name) VALUES ('cpu'), ('mem'), ('temp') ON CONFLICT DO NOTHING",
    ] {
        Sql::new(keys).query(db.backend()).execute(db.writer()).await?;
    }
    let bar = bar(((now_ms - start) / HOUR_MS) as u64, "hours of telemetry written");
    let mut rows = 0;
    for from in (start..now_ms).step_by(chunk as usize) {
        let to = (from + chunk).min(now_ms);
        rows += series.insert(&db, from, to).await?;
        bar.set_position(((to - start) / HOUR_MS) as u64);
    }
    bar.finish();
    reported(&db).await?;
    db.close().await;
    Ok(rows)
}

/// The telemetry generated: three metrics per sample, every `fleet_step` for each device
/// (offset by up to `spread_secs` per device) and every `hot_step` for the measured one.
struct Series<'a> {
    hot: &'a str,
    fleet_step: i64,
    hot_step: i64,
    spread_secs: i64,
    fleet_end: i64,
}

impl Series<'_> {
    /// Writes the samples taken in `[from, to)`, ordered by time as a live fleet's writer
    /// would have stored them: one device's rows lie among everyone's, as in production.
    async fn insert(&self, db: &Db, from: i64, to: i64) -> anyhow::Result<u64> {
        let fleet_to = to.min(self.fleet_end);
        let mut sql = Sql::new("WITH RECURSIVE fleet_steps(ts) AS (SELECT ");
        sql.bind(from).push(" AS ts WHERE ").bind(from).push(" < ").bind(fleet_to);
        sql.push(" UNION ALL SELECT ts + ").bind(self.fleet_step).push(" FROM fleet_steps WHERE ts + ");
        sql.bind(self.fleet_step).push(" < ").bind(fleet_to);
        sql.push("), hot_steps(ts) AS (SELECT ").bind(from).push(" AS ts WHERE ").bind(from).push(" < ").bind(to);
        sql.push(" UNION ALL SELECT ts + ").bind(self.hot_step).push(" FROM hot_steps WHERE ts + ");
        sql.bind(self.hot_step).push(" < ").bind(to);
        // CROSS JOIN keeps the devices inside the time loop (and the measured one found by id).
        sql.push(
            "), metrics(metric, name) AS (SELECT id, name FROM telemetry_metrics \
             WHERE name IN ('cpu', 'mem', 'temp')), \
             samples(device, ts) AS (\
             SELECT k.id, s.ts + d.rowid * 7919 % ",
        );
        sql.bind(self.spread_secs).push(
            " * 1000 FROM fleet_steps s CROSS JOIN devices d \
             JOIN telemetry_devices k ON k.device_id = d.id WHERE d.id <> ",
        );
        sql.bind(self.hot);
        sql.push(
            " UNION ALL SELECT k.id, s.ts FROM hot_steps s CROSS JOIN telemetry_devices k \
             WHERE k.device_id = ",
        );
        sql.bind(self.hot).push(
            ") INSERT INTO telemetry (device, metric, ts, value) \
             SELECT device, metric, ts, CASE name \
             WHEN 'cpu' THEN abs(random() % 10000) / 100.0 \
             WHEN 'mem' THEN 20 + abs(random() % 6000) / 100.0 \
             ELSE 35 + abs(random() % 3000) / 100.0 END \
             FROM samples CROSS JOIN metrics ORDER BY ts",
        );
        Ok(sql.query(db.backend()).execute(db.writer()).await?.rows_affected())
    }
}

/// What connected agents would have left on the device rows: an inventory (one of a few
/// profiles, with the device's own host name), the latest values and when they were taken.
async fn reported(db: &Db) -> anyhow::Result<()> {
    // (family, name, version, architecture, agent version, share of the fleet in twentieths)
    let profiles = [
        ("linux", "Debian GNU/Linux", "12", "x86_64", "0.9.3", 12),
        ("linux", "Ubuntu", "22.04", "aarch64", "0.9.2", 4),
        ("windows", "Windows 11 IoT Enterprise", "10.0.22631", "x86_64", "0.9.3", 3),
        ("macos", "macOS", "14.5", "aarch64", "0.9.1", 1),
    ];
    let mut lower = 0;
    for (family, name, version, arch, agent, share) in profiles {
        let inventory = Inventory {
            os_family: Some(family.into()),
            os_name: Some(name.into()),
            os_version: Some(version.into()),
            kernel_version: Some("6.1.0-21".into()),
            architecture: Some(arch.into()),
            cpu_model: Some("Cortex-A72 / Celeron J4125".into()),
            cpu_cores: Some(4),
            memory_bytes: Some(4 << 30),
            disks: vec![Disk { mount_point: "/".into(), file_system: Some("ext4".into()), total_bytes: 32 << 30 }],
            network_interfaces: vec![NetworkInterface {
                name: "eth0".into(),
                mac: Some("02:42:ac:11:00:02".into()),
                addresses: vec!["10.20.0.17/16".into()],
            }],
            agent_version: Some(agent.into()),
            ..Inventory::default()
        };
        let mut sql = Sql::new("UPDATE devices SET inventory = json_set(");
        sql.bind(serde_json::to_string(&inventory)?).push(", '$.hostname', name), os_family = ").bind(family);
        sql.push(", os_version = ").bind(version).push(", architecture = ").bind(arch);
        sql.push(", agent_version = ").bind(agent).push(", transport = 'agent', enrolled_at = created_at");
        sql.push(" WHERE rowid % 20 >= ").bind(lower).push(" AND rowid % 20 < ").bind(lower + share);
        sql.query(db.backend()).execute(db.writer()).await?;
        lower += share;
    }
    let series = |metric: &str| {
        format!(
            "t.device = (SELECT id FROM telemetry_devices WHERE device_id = devices.id) \
             AND t.metric = (SELECT id FROM telemetry_metrics WHERE name = '{metric}')"
        )
    };
    let newest =
        |metric: &str| format!("(SELECT value FROM telemetry t WHERE {} ORDER BY t.ts DESC LIMIT 1)", series(metric));
    let latest_at = format!("(SELECT MAX(ts) FROM telemetry t WHERE {})", series("cpu"));
    let text = format!(
        "UPDATE devices SET latest_at = {latest_at}, last_seen_at = {latest_at}, \
         latest_telemetry = json_object('cpu', {}, 'mem', {}, 'temp', {})",
        newest("cpu"),
        newest("mem"),
        newest("temp")
    );
    Sql::new(&text).query(db.backend()).execute(db.writer()).await?;
    Ok(())
}

/// GETs with the session cookie, as the browser sends them.
struct Get<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    cookie: &'a str,
}

/// Sorted request times and the size of the last response.
struct Timing {
    sorted: Vec<Duration>,
    bytes: usize,
}

impl Get<'_> {
    /// One GET; anything but 200 (a redirect to the sign-in page, say) is an error.
    async fn body(&self, path: &str) -> anyhow::Result<String> {
        let response =
            self.http.get(format!("{}{path}", self.base)).header(reqwest::header::COOKIE, self.cookie).send().await?;
        let status = response.status();
        let body = response.text().await?;
        anyhow::ensure!(status == reqwest::StatusCode::OK, "GET {path}: {status}: {}", first_line(&body));
        Ok(body)
    }

    async fn time(&self, path: &str, n: usize, bar: &ProgressBar) -> anyhow::Result<Timing> {
        let mut sorted = Vec::with_capacity(n);
        let mut bytes = 0;
        for i in 0..WARM_UP + n {
            let started = Instant::now();
            bytes = self.body(path).await?.len();
            if i >= WARM_UP {
                sorted.push(started.elapsed());
                bar.inc(1);
            }
        }
        sorted.sort();
        Ok(Timing { sorted, bytes })
    }
}

/// Follows the devices page's "Next page" link `pages` times from `path`; returns where it led.
async fn follow_next(get: &Get<'_>, path: &str, pages: usize) -> anyhow::Result<String> {
    let mut path = path.to_owned();
    for page in 1..=pages {
        let html = get.body(&path).await?;
        path = next_link(&html).with_context(|| format!("page {page} of the devices has no \"Next page\" link"))?;
    }
    Ok(path)
}

/// The target of the `<a … rel="next">` link, unescaped (askama writes `&` as `&#38;`).
fn next_link(html: &str) -> Option<String> {
    let rel = html.find("rel=\"next\"")?;
    let tag = &html[html[..rel].rfind("<a ")?..];
    let href = tag.find("href=\"")? + "href=\"".len();
    let end = href + tag[href..].find('"')?;
    Some(tag[href..end].replace("&#38;", "&").replace("&amp;", "&"))
}

/// A path as the table shows it: ids and long query strings cut.
fn shorten(path: &str, ids: &[&str]) -> String {
    let path = ids.iter().fold(path.to_owned(), |p, id| p.replace(id, "{id}"));
    match path.find("cursor=") {
        Some(at) => format!("{}cursor=…", &path[..at]),
        None => match path.find("&from=") {
            Some(at) => format!("{}&from=…&to=…&bucket_secs={}", &path[..at], path.rsplit('=').next().unwrap_or("")),
            None => path,
        },
    }
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("");
    line.get(..200).unwrap_or(line)
}

fn bar(len: u64, message: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{msg:30} [{elapsed_precise}] {wide_bar} {pos}/{len}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len).with_style(style).with_message(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_link_is_found_and_unescaped() {
        let html = r#"<section hx-get="/devices?sort=name&#38;cursor=abc"><a href="/devices?sort=name&#38;cursor=def" hx-get="x" rel="next">Next page</a>"#;
        assert_eq!(next_link(html).as_deref(), Some("/devices?sort=name&cursor=def"));
        let html = r#"<a href="/devices?q=x&amp;cursor=g" rel="next">"#;
        assert_eq!(next_link(html).as_deref(), Some("/devices?q=x&cursor=g"));
        assert_eq!(next_link("<p>no more</p>"), None);
    }
}
