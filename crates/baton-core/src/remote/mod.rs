//! Remote support sessions: an operator's terminal on one device (logs, files, tunnels and the
//! screen reuse the same sessions later). A session is made `pending` with a short-lived token
//! bound to it, opens when its client attaches with that token (once), and closes with a reason
//! in words. Limits (per device, per tenant) count the sessions not yet closed, so they hold
//! across server nodes. What is relayed is the server's (`baton-server`'s `remote`); the
//! tenant's switch and input recording are [`policy`], the recordings [`recordings`], their
//! format [`asciicast`].

pub mod asciicast;
pub mod files;
pub mod logs;
pub mod policy;
pub mod recordings;

use std::time::Duration;

use baton_proto::api::{
    Page,
    devices::DeviceStatus,
    remote::{RemoteSession, SessionCreate, SessionKind, SessionState, SessionTicket},
};
use sqlx::{AssertSqlSafe, Row, any::AnyRow};

use crate::{
    Error,
    access::{Principal, TenantScope, secrets},
    bus::SharedBus,
    devices, events, pagination,
    store::{Db, from_ms, is_id, new_id, now_ms, sql::Sql},
};

/// Event kinds of remote sessions; `data` names the acting user and their address.
pub mod kind {
    /// A session opened on the device (its client attached and the device accepted).
    pub const SESSION_STARTED: &str = "remote.session_started";
    /// A session ended; `data.reason` says why.
    pub const SESSION_ENDED: &str = "remote.session_ended";
    /// A device began to stream its logs to someone (`data`: the query).
    pub const LOGS_OPENED: &str = "remote.logs_opened";
    /// A log stream ended; `data` adds lines, bytes, duration and the reason.
    pub const LOGS_CLOSED: &str = "remote.logs_closed";
    /// A file was written on the device (or an upload was cut: `data.complete` is false).
    pub const FILE_UPLOADED: &str = "remote.file_uploaded";
    /// A file or directory was read from the device (or the download was cut).
    pub const FILE_DOWNLOADED: &str = "remote.file_downloaded";
}

/// How long an attach token works.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Prefix of attach tokens, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "bx_";

/// The server's limits on sessions (from its settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_device: u32,
    pub per_tenant: u32,
}

impl Limits {
    pub fn of(settings: &crate::Settings) -> Self {
        Limits { per_device: settings.remote_sessions_per_device, per_tenant: settings.remote_sessions_per_tenant }
    }
}

/// Who asks, from where: recorded on the session, its tokens and its events.
#[derive(Debug, Clone)]
pub struct Actor {
    pub label: String,
    pub source_addr: Option<String>,
    /// The principal's unique id ([`Principal::subject_id`]), where known: who opened a session.
    pub subject_id: Option<String>,
}

impl Actor {
    pub fn of(principal: &Principal, source_addr: Option<String>) -> Self {
        Actor { label: principal.subject_label(), source_addr, subject_id: Some(principal.subject_id()) }
    }
}

const COLUMNS: &str = "id, device_id, kind, state, opened_by, source_addr, command, created_at, opened_at, \
    closed_at, close_reason, exit_code, recording_key, recording_bytes, recording_ms, input_recorded, tunnel_host, \
    tunnel_port, screen_control";

/// Makes a session on a device and the token its client attaches with.
pub async fn create(
    db: &Db,
    scope: &TenantScope,
    device_id: &str,
    req: &SessionCreate,
    actor: &Actor,
    limits: Limits,
) -> Result<(SessionTicket, Terminal), Error> {
    let target = Target::of(req)?;
    let (cols, rows) = (req.cols.unwrap_or(80), req.rows.unwrap_or(24));
    for (field, cells) in [("/cols", cols), ("/rows", rows)] {
        if !(1..=baton_proto::streams::MAX_TERMINAL_CELLS).contains(&cells) {
            return Err(Error::invalid(field, "must be between 1 and 1000"));
        }
    }
    if req.command.len() > 256 || req.command.iter().any(|a| a.len() > 4096 || a.contains('\0')) {
        return Err(Error::invalid("/command", "at most 256 arguments of at most 4096 bytes, without NUL"));
    }
    if req.command.first().is_some_and(String::is_empty) {
        return Err(Error::invalid("/command/0", "the program must not be empty"));
    }
    reachable(db, scope, device_id).await?;
    let now = now_ms();
    let mut tx = db.writer().begin().await?;
    let live = |extra: &'static str| {
        format!(
            "SELECT COUNT(*) FROM remote_sessions WHERE tenant_id = $1 AND state <> 'closed' {extra} AND (state = 'open' OR created_at > $2)"
        )
    };
    let pending_since = now - TOKEN_LIFETIME.as_millis() as i64;
    let tenant_live: i64 =
        sqlx::query_scalar(AssertSqlSafe(live(""))).bind(scope.id()).bind(pending_since).fetch_one(&mut *tx).await?;
    if tenant_live >= i64::from(limits.per_tenant) {
        return Err(Error::Conflict(format!(
            "the tenant has {tenant_live} remote sessions open, its limit; close one first"
        )));
    }
    let device_live: i64 = sqlx::query_scalar(AssertSqlSafe(live("AND device_id = $3")))
        .bind(scope.id())
        .bind(pending_since)
        .bind(device_id)
        .fetch_one(&mut *tx)
        .await?;
    if device_live >= i64::from(limits.per_device) {
        return Err(Error::Conflict(format!(
            "device {device_id} has {device_live} remote sessions open, its limit; close one first"
        )));
    }
    let id = new_id();
    let command = serde_json::to_string(&req.command).map_err(anyhow::Error::from)?;
    sqlx::query(
        "INSERT INTO remote_sessions (id, tenant_id, device_id, kind, state, opened_by, source_addr, command, \
         term_cols, term_rows, created_at, input_recorded, tunnel_host, tunnel_port, screen_control, opener_id) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, 0, $11, $12, $13, $14)",
    )
    .bind(&id)
    .bind(scope.id())
    .bind(device_id)
    .bind(req.kind.as_str())
    .bind(&actor.label)
    .bind(actor.source_addr.as_deref())
    .bind(&command)
    .bind(i64::from(cols))
    .bind(i64::from(rows))
    .bind(now)
    .bind(target.host.as_deref())
    .bind(target.port.map(i64::from))
    .bind(i64::from(target.control))
    .bind(actor.subject_id.as_deref())
    .execute(&mut *tx)
    .await?;
    let (token, expires_at) = insert_token(&mut tx, scope, &id, false, actor, now).await?;
    tx.commit().await?;
    let session = get(db, scope, device_id, &id).await?;
    let terminal = Terminal { cols, rows, command: req.command.clone() };
    Ok((ticket(session, token, expires_at, false), terminal))
}

/// What a tunnel or screen session reaches on the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Target {
    host: Option<String>,
    port: Option<u16>,
    control: bool,
}

impl Target {
    /// Checks the fields of a session request against its kind: a tunnel needs a port (and a
    /// plain host name or address), only a screen controls, only a terminal has a size or a
    /// command.
    fn of(req: &SessionCreate) -> Result<Self, Error> {
        let terminal_only =
            [("/cols", req.cols.is_some()), ("/rows", req.rows.is_some()), ("/command", !req.command.is_empty())];
        if req.kind != SessionKind::Terminal
            && let Some((field, _)) = terminal_only.iter().find(|(_, set)| *set)
        {
            return Err(Error::invalid(field, "only a terminal session has a size or a command"));
        }
        if req.kind != SessionKind::Tunnel && (req.host.is_some() || req.port.is_some()) {
            return Err(Error::invalid(
                if req.port.is_some() { "/port" } else { "/host" },
                "only a tunnel session has a host and port",
            ));
        }
        if req.kind != SessionKind::Screen && req.control {
            return Err(Error::invalid("/control", "only a screen session is controlled"));
        }
        match req.kind {
            SessionKind::Terminal => Ok(Target::default()),
            SessionKind::Screen => Ok(Target { control: req.control, ..Target::default() }),
            SessionKind::Tunnel => {
                let port = req
                    .port
                    .filter(|p| *p != 0)
                    .ok_or_else(|| Error::invalid("/port", "a tunnel needs a TCP port, 1 to 65535"))?;
                let host = req.host.clone().unwrap_or_else(|| "localhost".to_owned());
                if !valid_host(&host) {
                    return Err(Error::invalid(
                        "/host",
                        "must be a host name or an IP address (1 to 253 letters, digits, `.`, `-`, `_`, `:`)",
                    ));
                }
                Ok(Target { host: Some(host), port: Some(port), control: false })
            }
        }
    }
}

/// A host name or address as the device resolves it: no spaces, schemes, paths or ports.
fn valid_host(host: &str) -> bool {
    (1..=253).contains(&host.len())
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        && !host.starts_with(['-', '.'])
}

/// The permission a session of this kind needs: a terminal `remote:terminal`, a tunnel
/// `remote:tunnel`, a screen `remote:screen-control` to control it and `remote:screen-view` to
/// see it only.
pub fn permission_for(req: &SessionCreate) -> crate::access::Permission {
    use crate::access::Permission;
    match req.kind {
        SessionKind::Terminal => Permission::RemoteTerminal,
        SessionKind::Tunnel => Permission::RemoteTunnel,
        SessionKind::Screen if req.control => Permission::RemoteScreenControl,
        SessionKind::Screen => Permission::RemoteScreenView,
    }
}

/// The request a session answers, for checking its permission again (to close it).
pub fn request_of(session: &RemoteSession) -> SessionCreate {
    SessionCreate {
        kind: session.kind,
        control: session.control,
        host: session.host.clone(),
        port: session.port,
        ..SessionCreate::default()
    }
}

/// Checks that remote support may reach the device now, whatever it asks of it (a terminal,
/// logs, files): the device is the tenant's (else 404), active (else 409), and the tenant has
/// remote access switched on (else 403).
pub async fn reachable(db: &Db, scope: &TenantScope, device_id: &str) -> Result<(), Error> {
    let device = devices::get(db, scope, device_id).await?;
    if device.status != DeviceStatus::Active {
        return Err(Error::Conflict(format!(
            "device {device_id} is {}; remote sessions need an active device",
            device.status.as_str()
        )));
    }
    if !policy::get(db, scope).await?.enabled {
        return Err(Error::Forbidden(
            "remote access is switched off for this tenant; an administrator can turn it on (PUT /api/v1/remote-policy)".into(),
        ));
    }
    Ok(())
}

/// A read-only token to watch an open session.
pub async fn watch(
    db: &Db,
    scope: &TenantScope,
    device_id: &str,
    session_id: &str,
    actor: &Actor,
) -> Result<SessionTicket, Error> {
    let session = get(db, scope, device_id, session_id).await?;
    if session.kind != SessionKind::Terminal {
        return Err(Error::Conflict(format!(
            "session {session_id} is a {}; only terminals can be watched",
            session.kind.as_str()
        )));
    }
    if session.state != SessionState::Open {
        return Err(Error::Conflict(format!(
            "session {session_id} is {}; only an open session can be watched",
            session.state.as_str()
        )));
    }
    let mut tx = db.writer().begin().await?;
    let (token, expires_at) = insert_token(&mut tx, scope, session_id, true, actor, now_ms()).await?;
    tx.commit().await?;
    Ok(ticket(session, token, expires_at, true))
}

async fn insert_token(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    scope: &TenantScope,
    session_id: &str,
    read_only: bool,
    actor: &Actor,
    now: i64,
) -> Result<(String, i64), Error> {
    let token = secrets::generate(TOKEN_PREFIX);
    let expires_at = now + TOKEN_LIFETIME.as_millis() as i64;
    sqlx::query(
        "INSERT INTO remote_session_tokens (token_hash, tenant_id, session_id, read_only, issued_to, source_addr, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(secrets::hash_token(&token))
    .bind(scope.id())
    .bind(session_id)
    .bind(i64::from(read_only))
    .bind(&actor.label)
    .bind(actor.source_addr.as_deref())
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok((token, expires_at))
}

fn ticket(session: RemoteSession, token: String, expires_at: i64, read_only: bool) -> SessionTicket {
    let attach_path = format!("/api/v1/sessions/{}/attach?token={token}", session.id);
    SessionTicket { session, token, expires_at: from_ms(expires_at), attach_path, read_only }
}

/// What a terminal session asks the device for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    pub cols: u16,
    pub rows: u16,
    pub command: Vec<String>,
}

/// A token redeemed: the session it opens, for whom, and whether it only watches.
#[derive(Debug, Clone)]
pub struct Attach {
    pub scope: TenantScope,
    pub session: RemoteSession,
    pub terminal: Terminal,
    pub read_only: bool,
    pub actor: Actor,
}

/// Redeems an attach token (once). Unknown, used, expired or foreign tokens are all refused
/// alike; so is a token of a session that has closed.
pub async fn redeem(db: &Db, session_id: &str, token: &str) -> Result<Attach, Error> {
    let refused = || Error::Unauthorized("the attach token is unknown, used or expired; open the session again".into());
    if !token.starts_with(TOKEN_PREFIX) || !is_id(session_id) {
        return Err(refused());
    }
    let now = now_ms();
    let mut tx = db.writer().begin().await?;
    let row = sqlx::query(
        "UPDATE remote_session_tokens SET used_at = $1 WHERE token_hash = $2 AND session_id = $3 \
         AND used_at IS NULL AND expires_at > $1 RETURNING tenant_id, read_only, issued_to, source_addr",
    )
    .bind(now)
    .bind(secrets::hash_token(token))
    .bind(session_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(refused)?;
    tx.commit().await?;
    let scope = TenantScope::internal(row.try_get::<String, _>("tenant_id")?);
    let read_only = row.try_get::<i64, _>("read_only")? != 0;
    let mut actor =
        Actor { label: row.try_get("issued_to")?, source_addr: row.try_get("source_addr")?, subject_id: None };
    let found = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS}, term_cols, term_rows, opener_id FROM remote_sessions WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(scope.id())
    .bind(session_id)
    .fetch_optional(db.reader())
    .await?
    .ok_or_else(refused)?;
    let session = from_row(&found)?;
    if !read_only {
        actor.subject_id = found.try_get("opener_id")?;
    }
    let wanted = if read_only { SessionState::Open } else { SessionState::Pending };
    if session.state != wanted {
        return Err(refused());
    }
    let size = |c: &str| found.try_get::<i64, _>(c).map(|v| u16::try_from(v).unwrap_or(80));
    let terminal = Terminal { cols: size("term_cols")?, rows: size("term_rows")?, command: session.command.clone() };
    Ok(Attach { scope, session, terminal, read_only, actor })
}

/// The device accepted the session: it is open.
pub async fn opened(db: &Db, bus: &SharedBus, attach: &Attach) -> Result<(), Error> {
    let session = &attach.session;
    sqlx::query("UPDATE remote_sessions SET state = 'open', opened_at = $1 WHERE tenant_id = $2 AND id = $3 AND state = 'pending'")
        .bind(now_ms())
        .bind(attach.scope.id())
        .bind(&session.id)
        .execute(db.writer())
        .await?;
    let mut data = serde_json::json!({
        "session_id": session.id, "kind": session.kind.as_str(), "user": attach.actor.label,
        "source_addr": attach.actor.source_addr, "command": session.command,
    });
    describe_target(&mut data, session);
    events::record(db, bus, &attach.scope, Some(&session.device_id), kind::SESSION_STARTED, data).await;
    Ok(())
}

/// How a session ended.
#[derive(Debug, Clone, Default)]
pub struct Ending {
    pub reason: String,
    pub exit_code: Option<i32>,
    pub recording: Option<recordings::Stored>,
    /// A tunnel's or screen's connections and bytes, for the closing event.
    pub traffic: Option<Traffic>,
}

/// What went through a tunnel or screen session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub connections: u64,
    pub bytes_to_device: u64,
    pub bytes_from_device: u64,
}

/// Adds a tunnel's host and port, or a screen's mode, to an event's data.
fn describe_target(data: &mut serde_json::Value, session: &RemoteSession) {
    match session.kind {
        SessionKind::Tunnel => {
            data["host"] = session.host.clone().into();
            data["port"] = session.port.into();
        }
        SessionKind::Screen => data["control"] = session.control.into(),
        SessionKind::Terminal => {}
    }
}

/// Closes a session (once: a second close changes nothing) and records the event, with `actor`
/// as who and where from.
pub async fn closed(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    session: &RemoteSession,
    actor: &Actor,
    ending: &Ending,
) -> Result<(), Error> {
    let rec = ending.recording.as_ref();
    let now = now_ms();
    let changed = sqlx::query(
        "UPDATE remote_sessions SET state = 'closed', closed_at = $1, close_reason = $2, exit_code = $3, \
         recording_key = $4, recording_bytes = $5, recording_ms = $6, input_recorded = $7 \
         WHERE tenant_id = $8 AND id = $9 AND state <> 'closed' RETURNING opened_at",
    )
    .bind(now)
    .bind(&ending.reason)
    .bind(ending.exit_code.map(i64::from))
    .bind(rec.map(|r| r.key.clone()))
    .bind(rec.map(|r| r.size_bytes as i64))
    .bind(rec.map(|r| r.duration_ms as i64))
    .bind(i64::from(rec.is_some_and(|r| r.input_recorded)))
    .bind(scope.id())
    .bind(&session.id)
    .fetch_optional(db.writer())
    .await?;
    if let Some(changed) = changed {
        let opened_at: Option<i64> = changed.try_get("opened_at")?;
        let mut data = serde_json::json!({
            "session_id": session.id, "kind": session.kind.as_str(), "user": actor.label,
            "source_addr": actor.source_addr, "reason": ending.reason, "exit_code": ending.exit_code,
        });
        describe_target(&mut data, session);
        if let Some(opened) = opened_at {
            data["duration_ms"] = (now - opened).max(0).into();
        }
        if let Some(traffic) = &ending.traffic {
            data["connections"] = traffic.connections.into();
            data["bytes_to_device"] = traffic.bytes_to_device.into();
            data["bytes_from_device"] = traffic.bytes_from_device.into();
        }
        events::record(db, bus, scope, Some(&session.device_id), kind::SESSION_ENDED, data).await;
    }
    Ok(())
}

/// Closes every session left open or pending by a server that stopped (at start, before any
/// session can run on this node). With several nodes this becomes a lease per node.
pub async fn close_orphans(db: &Db, reason: &str) -> Result<u64, Error> {
    let done = sqlx::query(
        "UPDATE remote_sessions SET state = 'closed', closed_at = $1, close_reason = $2 WHERE state <> 'closed'",
    )
    .bind(now_ms())
    .bind(reason)
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected())
}

/// Closes sessions nobody attached to before their token expired; returns how many.
pub async fn close_unattached(db: &Db) -> Result<u64, Error> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE remote_sessions SET state = 'closed', closed_at = $1, close_reason = $2 WHERE state = 'pending'          AND NOT EXISTS (SELECT 1 FROM remote_session_tokens t WHERE t.session_id = remote_sessions.id          AND (t.used_at IS NOT NULL OR t.expires_at > $1))",
    )
    .bind(now)
    .bind("nobody attached before the token expired")
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected())
}

/// One of a device's sessions.
pub async fn get(db: &Db, scope: &TenantScope, device_id: &str, id: &str) -> Result<RemoteSession, Error> {
    let not_found = || Error::NotFound(format!("session {id} of device {device_id}"));
    if !is_id(id) {
        return Err(not_found());
    }
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM remote_sessions WHERE tenant_id = $1 AND device_id = $2 AND id = $3"
    )))
    .bind(scope.id())
    .bind(device_id)
    .bind(id)
    .fetch_optional(db.reader())
    .await?
    .map(|r| from_row(&r))
    .transpose()?
    .ok_or_else(not_found)
}

/// A device's sessions, newest first.
pub async fn list(
    db: &Db,
    scope: &TenantScope,
    device_id: &str,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<Page<RemoteSession>, Error> {
    devices::get(db, scope, device_id).await?;
    page(db, scope, Some(device_id), false, limit, cursor).await
}

/// Sessions with a recording, newest first: the tenant's, or those of the device named by the
/// filter (an unknown one has none).
pub async fn recorded(
    db: &Db,
    scope: &TenantScope,
    device_id: Option<&str>,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<Page<RemoteSession>, Error> {
    page(db, scope, device_id, true, limit, cursor).await
}

async fn page(
    db: &Db,
    scope: &TenantScope,
    device_id: Option<&str>,
    recorded_only: bool,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<Page<RemoteSession>, Error> {
    let limit = pagination::limit(limit)?;
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM remote_sessions WHERE tenant_id = "));
    sql.bind(scope.id().to_owned());
    if let Some(device_id) = device_id {
        sql.push(" AND device_id = ").bind(device_id.to_owned());
    }
    if recorded_only {
        sql.push(" AND recording_key IS NOT NULL");
    }
    pagination::newest_first(&mut sql, cursor, limit)?;
    let rows = sql.query(db.backend()).fetch_all(db.reader()).await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(pagination::finish(items, limit, |s| pagination::newest_cursor(s.created_at, &s.id)))
}

fn from_row(row: &AnyRow) -> Result<RemoteSession, Error> {
    let kind: String = row.try_get("kind")?;
    let kind = SessionKind::parse(&kind).ok_or_else(|| anyhow::anyhow!("unknown session kind {kind}"))?;
    let state: String = row.try_get("state")?;
    let state = SessionState::parse(&state).ok_or_else(|| anyhow::anyhow!("unknown session state {state}"))?;
    let command: String = row.try_get("command")?;
    let ms = |c: &str| row.try_get::<Option<i64>, _>(c).map(|v| v.map(from_ms));
    let id: String = row.try_get("id")?;
    let device_id: String = row.try_get("device_id")?;
    let opened_by: String = row.try_get("opened_by")?;
    let created_at = from_ms(row.try_get("created_at")?);
    let recording = match row.try_get::<Option<String>, _>("recording_key")? {
        Some(_) => Some(baton_proto::api::remote::Recording {
            session_id: id.clone(),
            device_id: device_id.clone(),
            opened_by: opened_by.clone(),
            started_at: ms("opened_at")?.unwrap_or(created_at),
            duration_ms: row.try_get::<Option<i64>, _>("recording_ms")?.unwrap_or(0).max(0) as u64,
            size_bytes: row.try_get::<Option<i64>, _>("recording_bytes")?.unwrap_or(0).max(0) as u64,
            input_recorded: row.try_get::<i64, _>("input_recorded")? != 0,
        }),
        None => None,
    };
    Ok(RemoteSession {
        id,
        device_id,
        kind,
        state,
        opened_by,
        source_addr: row.try_get("source_addr")?,
        command: serde_json::from_str(&command).map_err(anyhow::Error::from)?,
        host: row.try_get("tunnel_host")?,
        port: row.try_get::<Option<i64>, _>("tunnel_port")?.and_then(|p| u16::try_from(p).ok()),
        control: row.try_get::<i64, _>("screen_control")? != 0,
        created_at,
        opened_at: ms("opened_at")?,
        closed_at: ms("closed_at")?,
        close_reason: row.try_get("close_reason")?,
        exit_code: row.try_get::<Option<i64>, _>("exit_code")?.and_then(|c| i32::try_from(c).ok()),
        recording,
    })
}

/// The recording's key in the artifact store, if the session has one.
pub async fn recording_key(db: &Db, scope: &TenantScope, device_id: &str, id: &str) -> Result<(String, u64), Error> {
    get(db, scope, device_id, id).await?;
    let row =
        sqlx::query("SELECT recording_key, recording_bytes FROM remote_sessions WHERE tenant_id = $1 AND id = $2")
            .bind(scope.id())
            .bind(id)
            .fetch_one(db.reader())
            .await?;
    match row.try_get::<Option<String>, _>("recording_key")? {
        Some(key) => Ok((key, row.try_get::<Option<i64>, _>("recording_bytes")?.unwrap_or(0).max(0) as u64)),
        None => Err(Error::NotFound(format!("recording of session {id}"))),
    }
}
