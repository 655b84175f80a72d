//! A simulated fleet for the rollout tests: real agents (the `baton-agent` library, in this
//! process, memory state) enrolled with a token and connected to the test server over
//! WebSocket. Their installer is simulated: it records what each device installed, and fails
//! for the serials a test puts in `failing`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use baton_agent::{
    Agent, AgentConfig, DeviceSource, Storage,
    updates::{InstallJob, Installer, install::BoxFuture, trust::Refusal},
};
use baton_proto::{
    api::{
        artifacts::{Artifact, ArtifactUpload},
        devices::DeviceQuery,
        enrollment::EnrollmentTokenCreate,
        rollouts::{FailureClass, Rollout, RolloutState},
    },
    inventory::Inventory,
};
use sha2::{Digest, Sha256};
use tokio::{sync::watch, task::JoinSet};

use crate::support::TestApp;

/// Versions installed, by serial, in order.
pub type Installs = Arc<Mutex<HashMap<String, Vec<String>>>>;

pub struct Fleet {
    pub installs: Installs,
    pub failing: Arc<Mutex<HashSet<String>>>,
    /// Serials whose installs never finish.
    pub hanging: Arc<Mutex<HashSet<String>>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Fleet {
    /// Starts `n` agents with serials `{prefix}-{i}` and waits until all are online.
    pub async fn start(app: &TestApp, n: usize, prefix: &str) -> Self {
        Self::start_with(app, n, prefix, |_| {}).await
    }

    /// The same, with each agent's config changed by `tweak`.
    pub async fn start_with(app: &TestApp, n: usize, prefix: &str, tweak: impl Fn(&mut AgentConfig)) -> Self {
        if std::env::var_os("BATON_TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_env_filter("info").try_init();
        }
        let token = EnrollmentTokenCreate { name: format!("{prefix}-fleet"), ..Default::default() };
        let token = app.admin.create_enrollment_token(&token).await.expect("token").secret;
        let installs = Installs::default();
        let failing = Arc::new(Mutex::new(HashSet::new()));
        let hanging = Arc::new(Mutex::new(HashSet::new()));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for i in 0..n {
            let serial = format!("{prefix}-{i:03}");
            let mut config = AgentConfig {
                server: Some(app.url.clone()),
                enrollment_token: Some(token.clone()),
                max_backoff_secs: 1,
                ..AgentConfig::default()
            };
            tweak(&mut config);
            let installer = SimInstaller {
                serial: serial.clone(),
                installs: installs.clone(),
                failing: failing.clone(),
                hanging: hanging.clone(),
            };
            let agent = Agent::builder(config)
                .storage(Storage::memory())
                .source(Source(serial))
                .installer(installer)
                .build()
                .expect("agent builds");
            let mut stopped = stopped.clone();
            tasks.spawn(async move {
                let _ = agent
                    .run(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await;
            });
        }
        let fleet = Self { installs, failing, hanging, stop, tasks };
        eventually("every agent online", || async {
            let online = count_online(app, prefix).await;
            if online == n { Ok(()) } else { Err(format!("{online} of {n} online")) }
        })
        .await;
        fleet
    }

    /// Serials by device id.
    pub async fn serials(app: &TestApp, prefix: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut query = DeviceQuery { q: Some(prefix.into()), limit: Some(500), ..DeviceQuery::default() };
        loop {
            let page = app.admin.devices(&query).await.expect("devices");
            out.extend(page.items.into_iter().map(|d| (d.id, d.serial.unwrap_or_default())));
            match page.next_cursor {
                Some(c) => query.cursor = Some(c),
                None => return out,
            }
        }
    }

    /// Versions a device installed, in order.
    pub fn installed(&self, serial: &str) -> Vec<String> {
        self.installs.lock().expect("lock").get(serial).cloned().unwrap_or_default()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn count_online(app: &TestApp, prefix: &str) -> usize {
    let mut n = 0;
    let mut query =
        DeviceQuery { q: Some(prefix.into()), online: Some(true), limit: Some(500), ..DeviceQuery::default() };
    loop {
        let page = app.admin.devices(&query).await.expect("devices");
        n += page.items.len();
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => return n,
        }
    }
}

struct Source(String);

impl DeviceSource for Source {
    fn inventory(&mut self) -> Inventory {
        Inventory {
            os_family: Some("linux".into()),
            architecture: Some("x86_64".into()),
            serial: Some(self.0.clone()),
            ..Inventory::default()
        }
    }

    fn sample(&mut self) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }

    fn serial(&self) -> Option<String> {
        Some(self.0.clone())
    }
}

struct SimInstaller {
    serial: String,
    installs: Installs,
    failing: Arc<Mutex<HashSet<String>>>,
    hanging: Arc<Mutex<HashSet<String>>>,
}

impl Installer for SimInstaller {
    fn install<'a>(&'a self, job: &'a InstallJob) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            if self.hanging.lock().expect("lock").contains(&self.serial) {
                std::future::pending::<()>().await;
            }
            if self.failing.lock().expect("lock").contains(&self.serial) {
                return Err(Refusal { class: FailureClass::Install, detail: "simulated installer failure".into() });
            }
            let bytes = tokio::fs::read(&job.file)
                .await
                .map_err(|e| Refusal { class: FailureClass::Install, detail: e.to_string() })?;
            let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(digest, job.artifact.sha256, "the agent hands over only bytes it checked");
            let mut installs = self.installs.lock().expect("lock");
            installs.entry(self.serial.clone()).or_default().push(job.artifact.version.clone());
            Ok(())
        })
    }

    fn healthy<'a>(&'a self, _job: &'a InstallJob) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn revert<'a>(&'a self, _job: &'a InstallJob) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Uploads `body` as artifact `name` `version` (a file).
pub async fn artifact(app: &TestApp, name: &str, version: &str, body: &[u8]) -> Artifact {
    let facts = ArtifactUpload { name: name.into(), version: version.into(), ..ArtifactUpload::default() };
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(body.to_vec())]);
    app.admin.upload_artifact(&facts, body.len() as u64, stream).await.expect("artifact uploaded")
}

/// Waits until the rollout is in `state`.
pub async fn rollout_in(app: &TestApp, id: &str, state: RolloutState) -> Rollout {
    eventually(&format!("rollout {state:?}"), || async {
        let r = app.admin.rollout(id).await.map_err(|e| e.to_string())?;
        if r.state == state {
            Ok(r)
        } else {
            Err(format!("{:?} {:?}: {:?}", r.state, r.paused_reason, r.progress.states))
        }
    })
    .await
}

pub use baton_testkit::eventually;
