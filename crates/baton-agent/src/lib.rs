//! `baton-agent`: the device agent, and the device SDK for applications that embed it.
//!
//! The agent enrolls with an enrollment token (once), keeps one WebSocket to the Baton server,
//! reports inventory and telemetry (buffered on disk while offline), and runs the commands the
//! server queues for the device. An application on the device can embed it to push its own
//! metrics and handle its own commands:
//!
//! ```no_run
//! # async fn example() -> Result<(), baton_agent::AgentError> {
//! use baton_agent::{Agent, AgentConfig};
//!
//! let config = AgentConfig::load(None)?;
//! let agent = Agent::builder(config)
//!     .on_command("open-drawer", |params| async move {
//!         // … drive the hardware …
//!         Ok(serde_json::json!({ "opened": true, "params": params }))
//!     })
//!     .build()?;
//! let handle = agent.handle();
//! tokio::spawn(async move {
//!     let mut metrics = std::collections::BTreeMap::new();
//!     metrics.insert("app.orders_today".to_owned(), 42.0);
//!     let _ = handle.push_metrics(metrics).await;
//! });
//! agent.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: settings from file, environment and flags.
//! - [`storage`]: identity, backlog and command memory, on disk or in memory.
//! - [`enroll`]: trading an enrollment token for an identity.
//! - [`errors`]: the words for a failure (its innermost cause).
//! - [`connection`]: the reconnect loop and one session with the server.
//! - [`backlog`], [`backoff`], [`executor`]: telemetry buffering, reconnect delays, running commands.
//! - [`bundle`]: support bundles: the device's logs, inventory and diagnostics, uploaded.
//! - [`source`]: where inventory and metrics come from (the real machine, or a simulation).
//! - [`system`]: inventory and metrics of the machine the agent runs on.

pub mod backlog;
pub mod backoff;
pub mod bundle;
pub mod certificate;
pub mod config;
pub mod connection;
pub mod enroll;
pub mod errors;
pub mod executor;
pub mod remote;
pub mod safe_open;
pub mod source;
pub mod storage;
pub mod system;
pub mod updates;

use std::{collections::BTreeMap, collections::HashMap, future::Future, sync::Arc};

pub use config::AgentConfig;
pub use source::{DeviceSource, SystemSource};
pub use storage::Storage;
use tokio::sync::mpsc;

/// The agent's version, reported to the server.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("state: {0}")]
    State(String),
    #[error("enrollment refused: {0}")]
    EnrollmentRefused(String),
    #[error(
        "this device was decommissioned; remove the `decommissioned` file in the state directory and enroll again to bring it back"
    )]
    Decommissioned,
    #[error("{0}")]
    Network(String),
}

/// How a run of the agent ended (errors aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The shutdown future completed.
    Stopped,
    /// The server decommissioned the device (and the state was wiped if asked).
    Decommissioned { wiped: bool },
}

/// Where the agent is with the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Enrolling,
    /// Enrolled, waiting for an administrator's approval.
    Pending,
    Connecting,
    Connected,
    Stopped,
    Decommissioned,
}

/// Lets the application talk to a running agent.
#[derive(Clone)]
pub struct AgentHandle {
    metrics: mpsc::Sender<BTreeMap<String, f64>>,
    status: tokio::sync::watch::Receiver<Status>,
}

impl AgentHandle {
    /// Queues custom metrics; they are stored with the telemetry like the agent's own, buffered
    /// while offline.
    pub async fn push_metrics(&self, metrics: BTreeMap<String, f64>) -> Result<(), AgentError> {
        self.metrics.send(metrics).await.map_err(|_| AgentError::State("the agent is not running".into()))
    }

    /// Where the agent is now; `changed()` on the receiver waits for the next change.
    pub fn status(&self) -> tokio::sync::watch::Receiver<Status> {
        self.status.clone()
    }
}

/// Builds an [`Agent`].
pub struct AgentBuilder {
    config: AgentConfig,
    storage: Option<Storage>,
    source: Option<Box<dyn DeviceSource>>,
    handlers: HashMap<String, executor::Handler>,
    runner: Option<executor::Runner>,
    installer: Option<Arc<dyn updates::Installer>>,
}

impl AgentBuilder {
    /// Installs updates with `installer` instead of on the machine (for simulated devices, or
    /// an application with its own way to install).
    pub fn installer(mut self, installer: impl updates::Installer) -> Self {
        self.installer = Some(Arc::new(installer));
        self
    }

    /// Answers `exec`, `reboot`, `ping` and custom commands with `runner` instead of running
    /// anything on the machine (for simulated devices).
    pub fn command_runner<F, Fut>(mut self, runner: F) -> Self
    where
        F: Fn(baton_proto::api::commands::CommandSpec) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = executor::Outcome> + Send + 'static,
    {
        self.runner = Some(Arc::new(move |spec| Box::pin(runner(spec))));
        self
    }

    /// Keeps state somewhere else than `config.state_dir` (the simulator keeps it in memory).
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Takes inventory and metrics from `source` instead of the machine.
    pub fn source(mut self, source: impl DeviceSource + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Handles the custom command `name` (sent as `{"type":"custom","name":…,"params":…}`).
    pub fn on_command<F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        F: Fn(serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<serde_json::Value, String>> + Send + 'static,
    {
        self.handlers.insert(name.to_owned(), Arc::new(move |params| Box::pin(handler(params))));
        self
    }

    pub fn build(self) -> Result<Agent, AgentError> {
        let storage = match self.storage {
            Some(s) => s,
            None => Storage::disk(&self.config.state_dir)?,
        };
        let source = self.source.unwrap_or_else(|| Box::new(SystemSource::new()));
        let installer = self.installer.unwrap_or_else(|| {
            Arc::new(updates::SystemInstaller {
                install_root: self.config.install_root.clone(),
                package_command: self.config.package_command.clone(),
                firmware_command: self.config.firmware_command.clone(),
                health_command: self.config.health_command.clone(),
            })
        });
        let (metrics_tx, metrics_rx) = mpsc::channel(256);
        let (status, _) = tokio::sync::watch::channel(Status::Starting);
        Ok(Agent {
            config: self.config,
            storage,
            source,
            handlers: self.handlers,
            runner: self.runner,
            installer,
            metrics_tx,
            metrics_rx,
            status,
        })
    }
}

/// A device agent, ready to run.
pub struct Agent {
    config: AgentConfig,
    storage: Storage,
    source: Box<dyn DeviceSource>,
    handlers: HashMap<String, executor::Handler>,
    runner: Option<executor::Runner>,
    installer: Arc<dyn updates::Installer>,
    metrics_tx: mpsc::Sender<BTreeMap<String, f64>>,
    metrics_rx: mpsc::Receiver<BTreeMap<String, f64>>,
    status: tokio::sync::watch::Sender<Status>,
}

impl Agent {
    pub fn builder(config: AgentConfig) -> AgentBuilder {
        AgentBuilder { config, storage: None, source: None, handlers: HashMap::new(), runner: None, installer: None }
    }

    pub fn handle(&self) -> AgentHandle {
        AgentHandle { metrics: self.metrics_tx.clone(), status: self.status.subscribe() }
    }

    /// Runs until `shutdown` completes or the server decommissions the device: enrolls if
    /// needed, connects, reconnects with backoff, and keeps sampling while offline.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<Exit, AgentError> {
        connection::run(self, shutdown).await
    }
}
