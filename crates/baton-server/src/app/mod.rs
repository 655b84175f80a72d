//! The application: built from settings (storage connected and migrated, first-start bootstrap
//! done, listener bound, engines started), then run until a shutdown signal, letting requests in
//! flight finish. The one module that sees every door and engine: it wires them together.

pub mod device_web;
pub mod files;
pub mod front;
pub mod router;
pub mod serve;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;

use crate::{
    Error,
    connections::{Registry, gate::ConnectionGate, proxy::TrustedProxies, rate::ConnectLimiter, setup::SetupLimit},
    engines,
    state::{AppState, Shared},
};
use baton_core::{
    access::login_limit::LoginLimiter,
    bus::LocalBus,
    commands::writer::CommandWriter,
    config::Settings,
    store::Db,
    telemetry::writer::TelemetryWriter,
    tenants::{self, Bootstrap},
};

pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    bootstrap: Bootstrap,
    mqtt: crate::mqtt::Listeners,
}

impl App {
    /// Binds `settings.http_addr` and builds the application.
    pub async fn build(settings: Settings) -> Result<Self, Error> {
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .map_err(|e| baton_core::Error::Config(format!("cannot listen on {}: {e}", settings.http_addr)))?;
        Self::build_with_listener(settings, listener).await
    }

    /// Builds on an already-bound listener (tests bind port 0).
    pub async fn build_with_listener(settings: Settings, listener: TcpListener) -> Result<Self, Error> {
        Self::build_with_clock(settings, listener, Arc::new(baton_core::clock::SystemClock)).await
    }

    /// Builds with a clock of the caller's (tests move a [`baton_core::clock::ManualClock`]).
    pub async fn build_with_clock(
        settings: Settings,
        listener: TcpListener,
        clock: baton_core::clock::SharedClock,
    ) -> Result<Self, Error> {
        settings.validate()?;
        let proxies = TrustedProxies::parse(&settings.proxy_protocol_from).map_err(baton_core::Error::Config)?;
        let gate = ConnectionGate::new(settings.max_connections_per_source, files::connection_budget(&settings));
        let (sealer, made) = baton_core::store::sealing::Sealer::from_settings(&settings)?;
        if let Some(path) = made {
            tracing::warn!(
                path = %path.display(),
                "created the key that seals the signing keys; keep it apart from database backups (or set \
                 BATON_KEY_ENCRYPTION_KEY, e.g. from a KMS)"
            );
        }
        let db = Db::connect(settings.database_url.as_deref(), &settings.data_dir, settings.sqlite_synchronous)
            .await?
            .sealed_with(sealer);
        let sealed = baton_core::artifacts::signing::seal_at_rest(&db).await?;
        if sealed > 0 {
            tracing::info!(keys = sealed, "sealed signing keys that were stored in plain form");
        }
        let bootstrap =
            tenants::bootstrap(&db, settings.admin_password.as_deref(), settings.bootstrap_token.as_deref()).await?;
        let local_addr = listener.local_addr().map_err(anyhow::Error::from)?;
        let mqtt = crate::mqtt::Listeners::bind(&settings).await?;
        let reset = baton_core::devices::presence::reset_all(&db).await?;
        if reset > 0 {
            tracing::info!(devices = reset, "marked devices offline until they reconnect");
        }
        let orphans = baton_core::remote::close_orphans(&db, "the server restarted").await?;
        if orphans > 0 {
            tracing::info!(sessions = orphans, "closed remote sessions a stopped server left open");
        }
        let artifacts = crate::artifact_stores::open(&settings).await?;
        let bus = LocalBus::shared();
        let connections = Registry::shared();
        crate::connections::spawn_dispatcher(&bus, connections.clone());
        baton_core::store::pool_wait::spawn_probe(&db);
        let state = Arc::new(Shared {
            login_limiter: LoginLimiter::new(settings.login_attempts_per_minute, Duration::from_secs(60)),
            connect_limiter: ConnectLimiter::new(settings.device_connects_per_second, settings.device_connect_burst),
            metrics: crate::observability::prometheus(),
            telemetry: TelemetryWriter::spawn(db.clone(), bus.clone()),
            commands: CommandWriter::spawn(db.clone(), bus.clone()),
            setups: SetupLimit::default(),
            setup_writer: baton_core::setups::SetupWriter::spawn(db.clone(), bus.clone()),
            artifacts,
            serving: baton_core::artifacts::serving::ServingMeter::new(db.clone()),
            rollouts: baton_core::rollouts::Engine::new(clock),
            bus,
            connections,
            remote: Default::default(),
            gate,
            proxies,
            db,
            settings,
            shutdown: tokio::sync::watch::channel(false).0,
        });
        engines::spawn_all(&engines::Context {
            db: state.db.clone(),
            bus: state.bus.clone(),
            rollouts: state.rollouts.clone(),
            artifacts: state.artifacts.clone(),
            settings: Arc::new(state.settings.clone()),
            shutdown: state.shutdown.subscribe(),
        });
        Ok(Self { listener, local_addr, state, bootstrap, mqtt })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where plain MQTT listens (`None` when it is turned off).
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt.addr()
    }

    /// Where MQTT over TLS listens (only with a certificate).
    pub fn mqtt_tls_addr(&self) -> Option<SocketAddr> {
        self.mqtt.tls_addr()
    }

    /// The base URL clients use to reach this server.
    pub fn url(&self) -> String {
        let scheme = if self.state.settings.tls_enabled() { "https" } else { "http" };
        let addr = self.local_addr;
        let host = if addr.ip().is_unspecified() { "localhost".to_owned() } else { addr.ip().to_string() };
        format!("{scheme}://{host}:{}", addr.port())
    }

    /// What first start created (the generated admin password, if any).
    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
        let db = self.state.db.clone();
        let connections = self.state.connections.clone();
        let state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            // Long-lived connections end now; requests in flight still finish.
            state.shutdown.send_replace(true);
        };
        let tls = match (&self.state.settings.tls_cert, &self.state.settings.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
            _ => None,
        };
        self.mqtt.spawn(self.state.clone());
        let limits = serve::Limits::of(&self.state);
        let app = router::router(self.state);
        serve::serve(self.listener, tls.map(tokio_rustls::TlsAcceptor::from), app, limits, shutdown).await;
        // Upgraded connections outlive the HTTP server's graceful shutdown: let the agent
        // sessions (told to go away above) record their disconnections before the pool closes.
        if !connections.drained(Duration::from_secs(10)).await {
            tracing::warn!("agent sessions still running after 10 s; closing the database anyway");
        }
        db.close().await;
        Ok(())
    }
}
