//! Storage: one connection pool over SQLite (embedded default) or PostgreSQL, chosen by URL.
//!
//! Every domain module writes its own SQL against [`Db`], in the portable dialect both engines
//! accept: `$1` placeholders, TEXT ids, integer-millisecond timestamps, 0/1 integers for flags,
//! JSON as TEXT. Each engine has its own migrations folder because DDL differs.
//!
//! SQLite allows one writer at a time. Rather than let concurrent transactions fail with
//! `SQLITE_BUSY` when they upgrade from read to write, writes go through a pool of exactly one
//! connection ([`Db::writer`]) and reads through a wider one ([`Db::reader`]). On PostgreSQL
//! both are the same pool.
//!
//! SQLite runs in WAL mode with `synchronous = FULL` by default ([`SqliteSynchronous`]): each
//! commit syncs the write-ahead log before it returns, so whatever the server acknowledges after
//! a commit — a PUBACK, an agent's telemetry ack, a 201 — survives a power cut. Telemetry is
//! committed in batches (`telemetry::writer`), so the sync is shared by many devices' messages.
//! PostgreSQL is durable at commit by its own default (`synchronous_commit = on`).

mod migrate;
pub mod pool_wait;
pub mod sealing;
pub mod search;
pub mod sql;

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    AnyPool, Executor,
    any::{AnyConnectOptions, AnyPoolOptions},
};

use crate::{Error, config::SqliteSynchronous};

/// Which engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The engine behind a connection (sqlx names it).
    pub fn of(connection: &sqlx::AnyConnection) -> Self {
        if connection.backend_name().eq_ignore_ascii_case("postgresql") { Self::Postgres } else { Self::Sqlite }
    }
}

/// The database: a writer pool and a reader pool (the same pool on PostgreSQL).
#[derive(Clone, Debug)]
pub struct Db {
    writer: AnyPool,
    reader: AnyPool,
    backend: Backend,
    /// Seals the secrets stored here (set by the server at start; tools that never touch
    /// secrets go without).
    sealer: Option<Arc<sealing::Sealer>>,
}

impl Db {
    /// This database, sealing its secrets with `sealer`.
    pub fn sealed_with(mut self, sealer: sealing::Sealer) -> Self {
        self.sealer = Some(Arc::new(sealer));
        self
    }

    /// The sealer for secrets at rest; an error where none was given.
    pub fn sealer(&self) -> Result<&sealing::Sealer, Error> {
        self.sealer
            .as_deref()
            .ok_or_else(|| Error::Config("no key-encryption key: this tool cannot read or make signing keys".into()))
    }

    /// Connects to `database_url` (`postgres://…`) or, when it is `None`, to
    /// `<data_dir>/baton.db` (committing as `synchronous` says), and applies pending migrations.
    pub async fn connect(
        database_url: Option<&str>,
        data_dir: &Path,
        synchronous: SqliteSynchronous,
    ) -> Result<Self, Error> {
        sqlx::any::install_default_drivers();
        let db = match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?;
                Self { writer: pool.clone(), reader: pool, backend: Backend::Postgres, sealer: None }
            }
            Some(url) if url.contains(":memory:") || url.contains("mode=memory") => {
                return Err(Error::Config(
                    "an in-memory SQLite database would be empty on every connection; use --data-dir".into(),
                ));
            }
            Some(url) if url.starts_with("sqlite:") => Self::sqlite(url, synchronous).await?,
            Some(url) => {
                return Err(Error::Config(format!(
                    "database URL `{}` is neither postgres:// nor sqlite:",
                    redact_url(url)
                )));
            }
            None => {
                std::fs::create_dir_all(data_dir)
                    .map_err(|e| Error::Config(format!("cannot create data dir {}: {e}", data_dir.display())))?;
                let url = format!("sqlite://{}?mode=rwc", data_dir.join("baton.db").display());
                Self::sqlite(&url, synchronous).await?
            }
        };
        migrate::run(&db).await?;
        Ok(db)
    }

    async fn sqlite(url: &str, synchronous: SqliteSynchronous) -> Result<Self, Error> {
        let options = AnyConnectOptions::from_str(url)?;
        let pragmas = match synchronous {
            SqliteSynchronous::Full => {
                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                 PRAGMA synchronous = FULL;"
            }
            SqliteSynchronous::Normal => {
                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                 PRAGMA synchronous = NORMAL;"
            }
        };
        let pool = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(60))
                // Waiting for the single writer is normal under load; a second is too long
                // (see `pool_wait`).
                .acquire_slow_threshold(Duration::from_secs(1))
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        conn.execute(pragmas).await?;
                        Ok(())
                    })
                })
                .connect_with(options.clone())
        };
        let writer = pool(1).await?;
        let reader = pool(8).await?;
        Ok(Self { writer, reader, backend: Backend::Sqlite, sealer: None })
    }

    /// The pool for statements that change data.
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// The pool for reads.
    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.reader).await.is_ok()
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// A database URL with any password replaced, fit for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A stored timestamp as a UTC time.
pub fn from_ms(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A new random, time-ordered id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Lowercase hex of bytes.
pub use migrate::hex;

/// Whether `text` has the shape of an id this server hands out.
pub fn is_id(text: &str) -> bool {
    uuid::Uuid::try_parse(text).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(super::redact_url("postgres://baton:s3cret@db:5432/baton"), "postgres://baton:***@db:5432/baton");
    }
}
