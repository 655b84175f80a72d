//! What every long-running command of the binary (`serve`, `demo`, `sim`, the benches) shares
//! about being a process: logging to stderr, and stopping on Ctrl-C or SIGTERM. Below `cli`,
//! `sim` and `bench`, so none of them borrows it from another.

use baton_core::config::LogFormat;

/// Logs to stderr, filtered by `RUST_LOG` or else by `default_filter`.
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this is called, before the
/// server says it is ready, so a signal sent right after readiness is never missed.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = interrupt.recv() => {},
            }
            tracing::info!("shutting down; letting requests in flight finish");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down; letting requests in flight finish");
        })
    }
}
