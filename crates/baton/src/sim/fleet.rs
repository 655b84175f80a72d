//! A fleet of simulated devices in one process: one real agent per device (memory storage, a
//! [`SimSource`], the simulated command runner), started at a steady pace so the server sees a
//! realistic wave of enrollments. Flapping devices stop their agent every 30–120 s and start it
//! again a few seconds later with the same storage, so they reconnect as the same device.
//!
//! Each device's state mirrors its agent's status watch into one atomic; a tally adds them up
//! ten times a second and publishes a [`Progress`] for whoever shows it.

use std::{
    future::Future,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use baton_agent::{Agent, AgentConfig, AgentError, DeviceSource, Exit, Status, Storage, config::RemoteConfig};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::{
    sync::watch,
    task::JoinSet,
    time::{Instant, MissedTickBehavior, interval, sleep},
};

use super::{
    applog, runner,
    source::{SharedSource, SimSource, serial},
};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub server: String,
    pub enrollment_token: String,
    pub devices: u32,
    /// Serials are `{prefix}-{index:05}`, indexes from 1.
    pub prefix: String,
    /// Share of devices that fail every exec, reboot and custom command, and every update.
    pub fail_rate: f64,
    /// Share of devices whose agent stops and starts again every 30–120 s.
    pub flap_rate: f64,
    /// Agents started per second.
    pub connect_rate: u32,
    /// A CA to trust for the server, besides the system's roots.
    pub ca_cert: Option<PathBuf>,
    /// Let the server open remote terminals on the devices: each runs `/bin/sh` on this machine,
    /// as the user running the fleet (the only part of a simulated device that is not simulated).
    pub terminal: bool,
    /// A directory for the devices' remote logs, files and support bundles: device `serial`
    /// writes an application log to `serial/logs/app.log` and may be sent files into
    /// `serial/files`; those are all their `log_paths` and `file_paths`. Off without one.
    pub sandbox: Option<PathBuf>,
}

impl FleetConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        let rate_ok = |r: f64| (0.0..=1.0).contains(&r);
        anyhow::ensure!(rate_ok(self.fail_rate) && rate_ok(self.flap_rate), "rates must be between 0 and 1");
        anyhow::ensure!(self.connect_rate > 0, "the connect rate must be at least 1 per second");
        let last = serial(&self.prefix, u64::from(self.devices));
        anyhow::ensure!(
            !self.prefix.is_empty()
                && last.len() <= 64
                && last.chars().all(|c| c.is_ascii_alphanumeric() || "._:/-".contains(c)),
            "the prefix `{}` does not make valid serials: use letters, digits and `._:/-`, up to 50 characters",
            self.prefix
        );
        Ok(())
    }

    /// Whether device `index` fails its commands.
    pub fn failing(&self, index: u64) -> bool {
        chosen(index, self.fail_rate, 0.0)
    }

    /// Whether device `index` flaps.
    pub fn flapping(&self, index: u64) -> bool {
        chosen(index, self.flap_rate, 0.5)
    }
}

/// Devices by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Not started yet.
    pub waiting: u32,
    /// Starting, enrolling or connecting.
    pub connecting: u32,
    pub connected: u32,
    /// Waiting for an administrator's approval.
    pub pending: u32,
    /// A flapping device between two runs.
    pub offline: u32,
    pub decommissioned: u32,
    /// Stopped by an error that retrying cannot fix (e.g. a refused enrollment token).
    pub failed: u32,
}

impl Counts {
    pub fn total(&self) -> u32 {
        self.waiting
            + self.connecting
            + self.connected
            + self.pending
            + self.offline
            + self.decommissioned
            + self.failed
    }

    /// Every device of a fleet of `devices` has started and got as far as it will for now.
    pub fn settled(&self, devices: u32) -> bool {
        self.total() == devices && self.waiting == 0 && self.connecting == 0
    }
}

/// What the fleet publishes while it runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub counts: Counts,
    /// The first error that stopped a device, with its serial.
    pub first_error: Option<String>,
    /// Since the fleet started.
    pub elapsed: Duration,
}

/// How a run went.
#[derive(Debug, Clone)]
pub struct FleetReport {
    pub devices: u32,
    /// The counts just before the fleet was stopped.
    pub last: Counts,
    pub peak_connected: u32,
    /// When every device was connected at once, if that happened.
    pub all_connected_after: Option<Duration>,
    /// Agent restarts of flapping devices.
    pub restarts: u64,
    pub first_error: Option<String>,
    pub ran_for: Duration,
}

const WAITING: u8 = 0;
const CONNECTING: u8 = 1;
const CONNECTED: u8 = 2;
const PENDING: u8 = 3;
const OFFLINE: u8 = 4;
const DECOMMISSIONED: u8 = 5;
const FAILED: u8 = 6;

/// What the device tasks share with the tally.
struct Shared {
    config: FleetConfig,
    states: Vec<AtomicU8>,
    first_error: Mutex<Option<String>>,
    restarts: AtomicU64,
}

impl Shared {
    fn set(&self, index: u64, state: u8) {
        if let Some(slot) = usize::try_from(index - 1).ok().and_then(|i| self.states.get(i)) {
            slot.store(state, Ordering::Relaxed);
        }
    }

    fn fail(&self, index: u64, error: &dyn std::fmt::Display) {
        self.set(index, FAILED);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(|| format!("{}: {error}", serial(&self.config.prefix, index)));
    }

    fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for state in &self.states {
            let n = match state.load(Ordering::Relaxed) {
                WAITING => &mut c.waiting,
                CONNECTING => &mut c.connecting,
                CONNECTED => &mut c.connected,
                PENDING => &mut c.pending,
                OFFLINE => &mut c.offline,
                DECOMMISSIONED => &mut c.decommissioned,
                _ => &mut c.failed,
            };
            *n += 1;
        }
        c
    }
}

/// Runs the fleet until `shutdown` completes (or every device has stopped for good), publishing
/// progress on `progress`.
pub async fn run_fleet(
    config: FleetConfig,
    progress: watch::Sender<Progress>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<FleetReport> {
    config.validate()?;
    let devices = config.devices;
    let every = Duration::from_secs_f64(1.0 / f64::from(config.connect_rate)).max(Duration::from_micros(1));
    let shared = Arc::new(Shared {
        states: (0..devices).map(|_| AtomicU8::new(WAITING)).collect(),
        config,
        first_error: Mutex::new(None),
        restarts: AtomicU64::new(0),
    });
    let (stop_tx, stop) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut pace = interval(every);
    let mut tally = interval(Duration::from_millis(100));
    tally.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut next, mut peak, mut all_connected_after) = (1u64, 0, None);
    // Counts the devices, notes the peak and when all were first connected, and publishes it.
    let mut take_tally = || {
        let counts = shared.counts();
        peak = peak.max(counts.connected);
        if counts.connected == devices && all_connected_after.is_none() {
            all_connected_after = Some(started.elapsed());
        }
        let first_error = shared.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        progress.send_replace(Progress { counts, first_error, elapsed: started.elapsed() });
        counts
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = pace.tick(), if next <= u64::from(devices) => {
                tasks.spawn(device(next, shared.clone(), stop.clone()));
                next += 1;
            }
            _ = tally.tick() => {
                take_tally();
                if next > u64::from(devices) && tasks.is_empty() {
                    break;
                }
            }
            Some(_) = tasks.join_next() => {}
        }
    }
    // A run stopped between two tallies still reports what it reached.
    let last = take_tally();
    let _ = stop_tx.send(true);
    // Agents close their connections at once; one stuck in a slow enrollment is cut off.
    let drained = tokio::time::timeout(Duration::from_secs(10), async { while tasks.join_next().await.is_some() {} });
    if drained.await.is_err() {
        tasks.shutdown().await;
    }
    let first_error = shared.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(FleetReport {
        devices,
        last,
        peak_connected: peak,
        all_connected_after,
        restarts: shared.restarts.load(Ordering::Relaxed),
        first_error,
        ran_for: started.elapsed(),
    })
}

/// One device for the life of the fleet: its agent, restarted while it flaps.
async fn device(index: u64, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let config = &shared.config;
    let storage = Storage::memory();
    let source = SharedSource::new(SimSource::new(&config.prefix, index));
    let (failing, flapping) = (config.failing(index), config.flapping(index));
    let mut rng = StdRng::seed_from_u64(index ^ 0xf1a9_f1a9);
    // A first sample at once, so the device has telemetry as soon as it connects.
    let mut first = Some(source.lock().sample());
    let sandbox = config.sandbox.as_ref().map(|dir| dir.join(serial(&config.prefix, index)));
    if let Some(dir) = &sandbox {
        match applog::prepare(dir) {
            Ok(()) => drop(tokio::spawn(applog::write(dir.join("logs/app.log"), index, failing, stop.clone()))),
            Err(e) => return shared.fail(index, &e),
        }
    }
    shared.set(index, CONNECTING);
    loop {
        let agent_config = AgentConfig {
            server: Some(config.server.clone()),
            enrollment_token: Some(config.enrollment_token.clone()),
            serial: Some(serial(&config.prefix, index)),
            ca_cert: config.ca_cert.clone(),
            remote: remote(config.terminal, sandbox.as_deref()),
            // Support bundles are made in the state directory: the sandbox's, when there is one.
            state_dir: sandbox.as_ref().map_or_else(|| AgentConfig::default().state_dir, |d| d.join("state")),
            ..AgentConfig::default()
        };
        let answers = source.clone();
        let built = Agent::builder(agent_config)
            .storage(storage.clone())
            .source(source.clone())
            .command_runner(move |spec| runner::answer(spec, failing, answers.clone()))
            .installer(runner::SimInstaller { failing })
            .build();
        let agent = match built {
            Ok(agent) => agent,
            Err(e) => return shared.fail(index, &e),
        };
        let handle = agent.handle();
        if let Some(sample) = first.take() {
            let _ = handle.push_metrics(sample).await;
        }
        let mut status = handle.status();
        let session = flapping.then(|| Duration::from_secs(rng.random_range(30..=120)));
        let mut agent_stop = stop.clone();
        let run = agent.run(async move {
            match session {
                Some(session) => tokio::select! {
                    _ = sleep(session) => {}
                    () = stopped(&mut agent_stop) => {}
                },
                None => stopped(&mut agent_stop).await,
            }
        });
        tokio::pin!(run);
        let result = loop {
            tokio::select! {
                result = &mut run => break result,
                Ok(()) = status.changed() => {
                    let state = status_state(*status.borrow_and_update());
                    shared.set(index, state);
                }
            }
        };
        match result {
            Ok(Exit::Stopped) => shared.set(index, OFFLINE),
            Ok(Exit::Decommissioned { .. }) | Err(AgentError::Decommissioned) => {
                return shared.set(index, DECOMMISSIONED);
            }
            Err(e) => return shared.fail(index, &e),
        }
        if !flapping || *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = sleep(Duration::from_secs(rng.random_range(2..=10))) => {}
            () = stopped(&mut stop) => return,
        }
        shared.restarts.fetch_add(1, Ordering::Relaxed);
    }
}

/// `[remote]` of a simulated agent: terminals run `/bin/sh` (the system's shell on Windows);
/// logs, files and support bundles stay inside the device's sandbox.
fn remote(terminal: bool, sandbox: Option<&std::path::Path>) -> RemoteConfig {
    let shell = (terminal && cfg!(unix)).then(|| "/bin/sh".to_owned());
    let mut remote = RemoteConfig { terminal, shell, ..RemoteConfig::default() };
    if let Some(dir) = sandbox {
        remote.logs = true;
        remote.log_paths = vec![dir.join("logs")];
        remote.files = true;
        remote.file_paths = vec![dir.join("files")];
        remote.bundles = true;
        // Not the host's journal: a simulated device has none of its own.
        remote.journal_directory = Some(dir.join("journal"));
    }
    remote
}

fn status_state(status: Status) -> u8 {
    match status {
        Status::Starting | Status::Enrolling | Status::Connecting => CONNECTING,
        Status::Connected => CONNECTED,
        Status::Pending => PENDING,
        Status::Stopped => OFFLINE,
        Status::Decommissioned => DECOMMISSIONED,
    }
}

/// Completes once the fleet is told to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Picks `rate` of all indexes, evenly spread: of the first `n`, exactly `floor(n * rate)` (with
/// `offset` 0) are chosen — 25 devices at 0.12 give 3 — and the same ones every run.
fn chosen(index: u64, rate: f64, offset: f64) -> bool {
    let step = |i: u64| (i as f64 * rate + offset).floor();
    index > 0 && step(index) != step(index - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(fail_rate: f64) -> FleetConfig {
        FleetConfig {
            server: "http://localhost:1".into(),
            enrollment_token: "be_x".into(),
            devices: 25,
            prefix: "sim".into(),
            fail_rate,
            flap_rate: 0.0,
            connect_rate: 200,
            ca_cert: None,
            terminal: false,
            sandbox: None,
        }
    }

    #[test]
    fn about_the_rate_of_devices_is_chosen_and_always_the_same() {
        let failing = |rate| (1..=1000).filter(|&i| config(rate).failing(i)).count();
        assert_eq!(failing(0.0), 0);
        assert_eq!(failing(1.0), 1000);
        assert_eq!(failing(0.1), 100);
        let few: Vec<u64> = (1..=25).filter(|&i| config(0.12).failing(i)).collect();
        assert_eq!(few, [9, 17, 25]);
        assert!(!config(0.0).flapping(1));
    }

    #[test]
    fn a_prefix_that_makes_bad_serials_is_refused() {
        assert!(config(0.0).validate().is_ok());
        assert!(FleetConfig { prefix: "my sim".into(), ..config(0.0) }.validate().is_err());
        assert!(FleetConfig { fail_rate: 1.5, ..config(0.0) }.validate().is_err());
    }
}
