//! `baton bench ota`: a fleet downloading one update artifact from Baton, and the same file from
//! nginx, in one run on one machine.
//!
//! The bench starts `baton serve` (fresh data dir), writes a file of `--size-mb` pseudo-random
//! bytes, uploads it, registers `--devices` devices with credentials and starts a rollout of the
//! artifact to them. No agent connects, so every execution stays NOTIFIED, which is when a
//! device may download. The bench's own downloaders then fetch each device's artifact with that
//! device's credentials, as the agent does (`GET /api/v1/agent/executions/{id}/artifact`), at
//! most `--concurrency` at a time: one shared HTTP/1.1 client, every body streamed and counted,
//! never written to disk, and one download in 100 hashed and checked against the artifact's
//! SHA-256 (hashing every one would take the cores the servers need). Then nginx (Debian's,
//! `sendfile on`, started here with a generated config) serves the same file to the same
//! downloaders. Both servers' memory is sampled every 200 ms.
//!
//! From the measured rate it answers "how long does a rollout of this artifact to 1,000 devices
//! take", bounded by the server and by each device's link, and sets it beside the rollout's own
//! estimate, read before the downloads start: its download part against the measured time, with
//! the bound it names. `-o json` prints every figure as one JSON object instead. Linux only.

use std::{
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use baton_client::Client;
use baton_proto::api::{
    artifacts::{ArtifactKind, ArtifactUpload},
    devices::DeviceCreate,
    enrollment::DeviceImport,
    rollouts::{ExecutionQuery, ExecutionState, InstallSpec, RolloutCreate, RolloutProgress, Targets},
};
use futures::{StreamExt, TryStreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{mib, proc};

mod report;

#[derive(clap::Args)]
pub struct OtaArgs {
    /// Simulated devices, one download each.
    #[arg(long, default_value_t = 1_000)]
    devices: usize,
    /// Artifact size in MB (10^6 bytes).
    #[arg(long, default_value_t = 100)]
    size_mb: u64,
    /// Downloads at the same time (default: every device at once).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Each device's own link, in Mbit/s, for the link-bound rollout time.
    #[arg(long, default_value_t = 10.0)]
    link_mbit: f64,
}

/// Where Debian puts nginx.
const NGINX: &str = "/usr/sbin/nginx";
/// One download in this many is hashed and checked.
const VERIFY_EVERY: usize = 100;
/// The fleet the rollout-time question is about.
const QUESTION_DEVICES: f64 = 1_000.0;
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

pub async fn run(a: OtaArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(a.devices > 0 && a.size_mb > 0, "--devices and --size-mb must be at least 1");
    let nginx = nginx_binary()?;
    let concurrency = a.concurrency.unwrap_or(a.devices).clamp(1, a.devices);
    baton_server::app::files::raise_open_file_limit();
    let size = a.size_mb * 1_000_000;

    let files = tempfile::tempdir()?;
    let artifact_path = files.path().join("artifact.bin");
    let sha256 = write_random_file(&artifact_path, size).await?;
    let token = format!("bench-{}", super::uuid_like());
    let server = super::start_server_with(&token, &[])?;
    let pid = server.child.id();
    let client = Client::new(&server.url, Some(token), None)?;
    eprintln!(
        "Baton {} (pid {pid}, {}); {} devices × {} MB, {concurrency} at a time",
        server.url,
        super::database_name(),
        a.devices,
        a.size_mb
    );

    // The artifact, the devices and the rollout.
    let facts = ArtifactUpload {
        name: "bench-ota".into(),
        version: "1.0.0".into(),
        kind: ArtifactKind::File,
        sha256: Some(sha256.clone()),
        ..Default::default()
    };
    let artifact = client.upload_artifact(&facts, size, file_stream(artifact_path.clone()).await?).await?;
    let credentials = create_devices(&client, a.devices).await?;
    let rollout = client
        .create_rollout(&RolloutCreate {
            name: "bench-ota".into(),
            artifact_id: artifact.id.clone(),
            targets: Targets {
                device_ids: credentials.iter().map(|(id, _)| id.clone()).collect(),
                ..Default::default()
            },
            install: InstallSpec { path: Some("/x".into()), ..Default::default() },
            windows: Some(vec![]),
            ..RolloutCreate::default()
        })
        .await?;
    let executions = notified_executions(&client, &rollout.id, a.devices).await?;
    // The estimate as the console shows it before any device has downloaded.
    let estimate = client.rollout(&rollout.id).await?.progress;
    let secrets: std::collections::HashMap<_, _> = credentials.into_iter().collect();
    let baton_jobs = executions
        .iter()
        .map(|(execution, device)| Job {
            url: format!("{}/api/v1/agent/executions/{execution}/artifact", server.url),
            device: Some((device.clone(), secrets.get(device).cloned().unwrap_or_default())),
        })
        .collect();

    let http = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(concurrency)
        .build()
        .context("the download client")?;
    let expect = Expect { size, sha256 };
    let baton = download_all("Baton", &http, baton_jobs, concurrency, &[pid], &expect).await?;
    // The rate the server measured of itself meanwhile, which the next estimates use.
    let kept = client.rollout(&rollout.id).await?.progress.serving_bytes_per_sec;
    drop(server);

    let peer = start_nginx(&nginx, files.path(), concurrency).await?;
    let nginx_jobs = (0..a.devices).map(|_| Job { url: format!("{}/artifact.bin", peer.url), device: None }).collect();
    let pids = peer.pids();
    let nginx = download_all("nginx", &http, nginx_jobs, concurrency, &pids, &expect).await?;
    drop(peer);

    if json {
        let figures = report::Figures::of(&a, concurrency, &baton, &nginx, &estimate, kept);
        println!("{}", serde_json::to_string_pretty(&figures)?);
        return Ok(());
    }
    print_table(&a, concurrency, &baton, &nginx);
    print_answer(&a, size, &baton, &estimate, kept);
    Ok(())
}

/// One device's download: its URL and, for Baton, the device's id and secret.
struct Job {
    url: String,
    device: Option<(String, String)>,
}

/// What every download must be.
struct Expect {
    size: u64,
    sha256: String,
}

/// One server's figures.
struct Outcome {
    wall: Duration,
    /// Per download, from sending the request to the last byte, sorted.
    times: Vec<Duration>,
    bytes: u64,
    verified: usize,
    rss_before: u64,
    rss_peak: u64,
    rss_after: u64,
    server_cpu: Duration,
    bench_cpu: Duration,
}

impl Outcome {
    fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Runs every job, at most `concurrency` at a time, while sampling the memory of `pids`.
async fn download_all(
    name: &str,
    http: &reqwest::Client,
    jobs: Vec<Job>,
    concurrency: usize,
    pids: &[u32],
    expect: &Expect,
) -> anyhow::Result<Outcome> {
    let rss = |pids: &[u32]| pids.iter().filter_map(|p| proc::rss_bytes(*p).ok()).sum::<u64>();
    let cpu = |pids: &[u32]| pids.iter().filter_map(|p| proc::cpu_time(*p).ok()).sum::<Duration>();
    let rss_before = rss(pids);
    let (cpu_before, bench_before) = (cpu(pids), proc::cpu_time(std::process::id())?);
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (done, peak, pids) = (done.clone(), peak.clone(), pids.to_vec());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss(&pids), Ordering::Relaxed);
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };
    let bar = bar(jobs.len() as u64, &format!("{name}: downloads finished"));
    let started = Instant::now();
    let results: Vec<(Duration, bool)> = stream::iter(jobs.into_iter().enumerate())
        .map(|(i, job)| {
            let (http, bar) = (http.clone(), bar.clone());
            let (size, sha256) = (expect.size, expect.sha256.clone());
            let task = tokio::spawn(async move {
                let took = download(&http, &job, size, (i % VERIFY_EVERY == 0).then_some(sha256.as_str())).await;
                bar.inc(1);
                took.map(|t| (t, i % VERIFY_EVERY == 0))
            });
            async move { task.await? }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let wall = started.elapsed();
    bar.finish();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    tokio::time::sleep(Duration::from_secs(1)).await; // let the server drop what it held for the downloads
    let mut times: Vec<Duration> = results.iter().map(|(t, _)| *t).collect();
    times.sort();
    Ok(Outcome {
        wall,
        bytes: expect.size * times.len() as u64,
        verified: results.iter().filter(|(_, v)| *v).count(),
        times,
        rss_before,
        rss_peak: peak.load(Ordering::Relaxed).max(rss(pids)),
        rss_after: rss(pids),
        server_cpu: cpu(pids).saturating_sub(cpu_before),
        bench_cpu: proc::cpu_time(std::process::id())?.saturating_sub(bench_before),
    })
}

/// One download, streamed and counted; hashed when `sha256` is given.
async fn download(http: &reqwest::Client, job: &Job, size: u64, sha256: Option<&str>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut request = http.get(&job.url);
    if let Some((id, secret)) = &job.device {
        request = request.bearer_auth(secret).header("x-baton-device-id", id);
    }
    let mut response = request.send().await.with_context(|| format!("GET {}", job.url))?;
    anyhow::ensure!(response.status() == reqwest::StatusCode::OK, "GET {}: {}", job.url, response.status());
    let mut hasher = sha256.map(|_| Sha256::new());
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await? {
        received += chunk.len() as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
    }
    anyhow::ensure!(received == size, "GET {}: {received} bytes, expected {size}", job.url);
    if let (Some(h), Some(expected)) = (hasher, sha256) {
        anyhow::ensure!(hex(&h.finalize()) == expected, "GET {}: the bytes differ from the artifact", job.url);
    }
    Ok(started.elapsed())
}

/// Writes `size` pseudo-random bytes (so no layer can compress or skip zeros); returns their
/// SHA-256.
async fn write_random_file(path: &std::path::Path, size: u64) -> anyhow::Result<String> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xBA70);
    let mut file = tokio::fs::File::create(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    file.flush().await?;
    Ok(hex(&hasher.finalize()))
}

/// The file as an upload body, 1 MiB at a time.
async fn file_stream(
    path: std::path::PathBuf,
) -> anyhow::Result<impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static> {
    let file = tokio::fs::File::open(path).await?;
    Ok(stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 1 << 20];
        let n = file.read(&mut buf).await?;
        buf.truncate(n);
        Ok((n > 0).then_some((buf, file)))
    }))
}

/// Imports `n` devices and issues each a credential: (device id, secret).
async fn create_devices(client: &Client, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(2_000) {
        let devices = (start..(start + 2_000).min(n))
            .map(|i| DeviceCreate { serial: format!("ota-bench-{i:05}"), ..Default::default() })
            .collect();
        ids.extend(client.import_devices(&DeviceImport { devices }).await?.into_iter().map(|d| d.id));
    }
    let bar = bar(n as u64, "devices registered, credentials issued");
    let credentials = stream::iter(ids)
        .map(|id| async move { client.issue_device_credential(&id).await })
        .buffered(16)
        .inspect(|_| bar.inc(1))
        .map_ok(|c| (c.device_id, c.secret))
        .try_collect()
        .await?;
    bar.finish();
    Ok(credentials)
}

/// The rollout's executions once all `n` are NOTIFIED: (execution id, device id).
async fn notified_executions(client: &Client, rollout: &str, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let started = Instant::now();
    loop {
        let all = client.all_rollout_executions(rollout, &ExecutionQuery::default()).await?;
        if all.len() == n && all.iter().all(|e| e.state == ExecutionState::Notified) {
            return Ok(all.into_iter().map(|e| (e.id, e.device_id)).collect());
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the executions were not all NOTIFIED in 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// nginx of the bench's own, serving `root` on a free loopback port; stopped when dropped.
struct Nginx {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// The master and its workers.
    fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut pids = vec![master];
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap_or_default();
        pids.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        pids
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM lets the master stop its workers; SIGKILL would leave them serving.
        let workers = self.pids();
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in workers.iter().skip(1) {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).stderr(Stdio::null()).status();
        }
    }
}

fn nginx_binary() -> anyhow::Result<std::path::PathBuf> {
    let path = std::path::PathBuf::from(NGINX);
    if !path.exists() {
        println!("nginx is the peer of this bench and {NGINX} is missing: apt-get install nginx");
        anyhow::bail!("{NGINX} is missing: apt-get install nginx");
    }
    Ok(path)
}

/// Starts nginx (master and `auto` workers, `sendfile on`, no access log) serving `root`.
async fn start_nginx(binary: &std::path::Path, root: &std::path::Path, concurrency: usize) -> anyhow::Result<Nginx> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = tempfile::tempdir()?;
    let d = dir.path().display();
    // Workers run as `nobody` when the master is root: they must be able to read the file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
    }
    let temp =
        ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map(|t| format!("  {t}_temp_path {d}/{t};\n")).concat();
    let config = format!(
        "daemon off;\nworker_processes auto;\nworker_rlimit_nofile {files};\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections {files}; }}\nhttp {{\n  access_log off;\n  \
         sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n{temp}  types {{ application/octet-stream bin; }}\n  \
         server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
        files = concurrency + 256,
        root = root.display(),
    );
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config)?;
    let mut child = Command::new(binary)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            anyhow::bail!("nginx exited ({status}): {log}");
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "nginx did not start listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Nginx { child, url: format!("http://127.0.0.1:{port}"), _dir: dir })
}

fn print_table(a: &OtaArgs, concurrency: usize, baton: &Outcome, nginx: &Outcome) {
    let secs = |t: &Outcome, p: f64| proc::percentile(&t.times, p).as_secs_f64();
    let rate = |t: &Outcome| t.bytes_per_sec() / 1e9;
    let cores = |t: &Outcome, d: Duration| d.as_secs_f64() / t.wall.as_secs_f64().max(1e-9) * 100.0;
    println!();
    println!(
        "| server | devices (at once) | size | wall time | aggregate throughput | per download p50 / p99 | \
         server RSS before → peak → after | server CPU | bench CPU | checked (sha256) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, t) in [("Baton", baton), ("nginx 1.22 (sendfile)", nginx)] {
        println!(
            "| {name} | {} ({concurrency}) | {} MB | {:.2} s | {:.2} GB/s | {:.2} s / {:.2} s | \
             {:.1} → {:.1} → {:.1} MiB | {:.0} % of one core | {:.0} % | {} of {} |",
            a.devices,
            a.size_mb,
            t.wall.as_secs_f64(),
            rate(t),
            secs(t, 50.0),
            secs(t, 99.0),
            mib(t.rss_before),
            mib(t.rss_peak),
            mib(t.rss_after),
            cores(t, t.server_cpu),
            cores(t, t.bench_cpu),
            t.verified,
            t.times.len(),
        );
    }
    println!(
        "| **Baton ÷ nginx** | | | | **{:.2}×** | | peak {:.1}× | | | |",
        baton.bytes_per_sec() / nginx.bytes_per_sec().max(1e-9),
        baton.rss_peak as f64 / nginx.rss_peak.max(1) as f64
    );
    let per_gb = |t: &Outcome| t.server_cpu.as_secs_f64() / (t.bytes as f64 / 1e9).max(1e-9);
    println!(
        "\nServer CPU-seconds per GB served: Baton {:.2}, nginx {:.2} ({:.1}×)",
        per_gb(baton),
        per_gb(nginx),
        per_gb(baton) / per_gb(nginx).max(1e-9)
    );
    println!(
        "Baton's server memory grew by {:.1} MiB at its peak while serving {:.1} GB",
        mib(baton.rss_peak.saturating_sub(baton.rss_before)),
        baton.bytes as f64 / 1e9
    );
}

/// How long a rollout of this artifact to 1,000 devices takes: bounded by Baton's measured
/// rate, or by each device's own link, whichever is slower.
fn print_answer(a: &OtaArgs, size: u64, baton: &Outcome, estimate: &RolloutProgress, kept: Option<u64>) {
    let rate = baton.bytes_per_sec();
    let link = a.link_mbit * 1e6 / 8.0;
    let per_device = size as f64 / link;
    println!("\nHow long does a {} MB rollout take (downloads only; installs and reboots come after)?", a.size_mb);
    for devices in [QUESTION_DEVICES, a.devices as f64] {
        let server_bound = devices * size as f64 / rate;
        let demand = devices * link;
        let answer = server_bound.max(per_device);
        let why =
            if server_bound >= per_device { "the server is the bound" } else { "the devices' links are the bound" };
        println!(
            "- {devices:.0} devices: server-bound {server_bound:.0} s (at Baton's measured {:.2} GB/s); link-bound \
             {per_device:.0} s (each device at {} Mbit/s, {:.2} GB/s for all at once) → **{answer:.0} s**, {why}",
            rate / 1e9,
            a.link_mbit,
            demand / 1e9
        );
        if devices as usize == a.devices {
            break;
        }
    }
    let e = estimate;
    let shown = |v: Option<u64>, unit: &str| v.map_or("none".to_owned(), |v| format!("{v} {unit}"));
    println!(
        "- the rollout's own estimate before the downloads started: {} in all, of which downloads {} (bound by {}; \
         the server's serving rate {}, devices' speed {}), then installs",
        shown(e.eta_secs, "s"),
        shown(e.eta_download_secs, "s"),
        e.eta_bound.map_or("nothing", |b| b.describe()),
        shown(e.serving_bytes_per_sec, "B/s"),
        e.bandwidth_bytes_per_sec.map_or_else(
            || format!("none reported; the estimate needs {} of each", shown(e.eta_device_speed_needed, "B/s")),
            |b| format!("{b} B/s")
        ),
    );
    if let Some(ratio) = report::eta_ratio(e, baton) {
        println!(
            "- estimated downloads ÷ measured: {} s ÷ {:.1} s = **{ratio:.2}** (goal: within 0.8–1.2)",
            e.eta_download_secs.unwrap_or(0),
            baton.wall.as_secs_f64()
        );
    }
    println!(
        "- the serving rate the server measured of itself during the downloads (for the next estimates): {}",
        shown(kept, "B/s")
    );
}

fn bar(len: u64, message: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{msg:40} [{elapsed_precise}] {wide_bar} {pos}/{len}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len).with_style(style).with_message(message.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
