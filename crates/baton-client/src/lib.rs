//! A typed client for Baton's REST API. The CLI and the black-box tests use it, so the API is
//! exercised the way users' automation exercises it. The two live streams (events, telemetry)
//! are Server-Sent Events, parsed in [`sse`].

pub mod sse;

use std::collections::VecDeque;

use baton_proto::{
    api::{
        Changed, Page,
        access::{ApiToken, LoginRequest, Me, PageQuery, Role, Session, TokenCreate, TokenCreated, User, UserCreate},
        artifacts::{Artifact, ArtifactQuery, ArtifactUpload, SigningKey, SigningKeyCreate},
        attributes::DeviceAttributes,
        bundles::{BundleCreate, BundleProgress, BundleQuery, BundleRequested, SupportBundle},
        certificates::{CertificateAuthority, CertificateRequest, DeviceCertificate, IssuedCertificate},
        commands::{Command, CommandBatch, CommandCreate, CommandQuery},
        devices::{Device, DeviceCreate, DeviceCredential, DeviceQuery, DeviceUpdate},
        enrollment::{DeviceImport, EnrollmentToken, EnrollmentTokenCreate, EnrollmentTokenCreated},
        events::{Event, EventQuery, EventStreamQuery},
        files::{FileQuery, FileStatQuery, FileUpload, FileWritten, RemoteFile},
        groups::{Group, GroupCreate, GroupMembers, GroupQuery, GroupUpdate},
        problem::Problem,
        remote::{RemotePolicy, RemoteSession, SessionCreate, SessionTicket},
        rollouts::{Execution, ExecutionQuery, Rollout, RolloutCreate, RolloutQuery, RolloutRule, RolloutRuleCreate},
        telemetry::{Latest, Series, TelemetryEvent, TelemetryQuery, TelemetryStreamQuery},
        tenants::{Tenant, TenantCreate, TenantUpdate},
    },
    inventory::Inventory,
    streams::{LogQuery, LogRecord, LogSource},
};
use futures::stream::{self, BoxStream, StreamExt};
pub use reqwest::StatusCode;
use reqwest::{Method, RequestBuilder, header::ACCEPT};
use serde::{Serialize, de::DeserializeOwned};

/// The longest log record the client reads (the agent cuts lines at 64 KiB; JSON escaping can
/// grow one): a server that sends more is answered with an error, not unbounded memory.
const MAX_LOG_LINE: usize = 1 << 20;
pub use sse::Live;

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` is not a valid server URL: {1}")]
    BadUrl(String, String),
    #[error("cannot reach the Baton server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered with a problem.
    #[error("{problem}")]
    Api { status: StatusCode, problem: Problem },
    #[error("unexpected answer from {url} (HTTP {status}): {reason}")]
    Unexpected { url: String, status: StatusCode, reason: String },
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } | Self::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A connection to one Baton server, with or without a token.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for `base_url` (e.g. `https://baton.example.com`). `ca_pem` adds a CA to trust
    /// besides the system's, for servers with a private certificate.
    pub fn new(base_url: &str, token: Option<String>, ca_pem: Option<&[u8]>) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = base_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base).map_err(|e| ClientError::BadUrl(base.clone(), e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::BadUrl(base, "use http:// or https://".into()));
        }
        let mut builder = reqwest::Client::builder().user_agent(concat!("baton-client/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let cert =
                reqwest::Certificate::from_pem(pem).map_err(|e| ClientError::BadUrl(base.clone(), e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| ClientError::BadUrl(base.clone(), e.to_string()))?;
        Ok(Self { http, base, token })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The same server with another token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self { token: Some(token.into()), ..self.clone() }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends a request; an answer other than 2xx becomes an error.
    async fn open(&self, request: RequestBuilder) -> Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let url = response.url().to_string();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(problem) => Err(ClientError::Api { status, problem }),
            Err(_) => Err(ClientError::Unexpected {
                url,
                status,
                reason: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            }),
        }
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = self.open(request).await?;
        let status = response.status();
        let url = response.url().to_string();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        let body = if bytes.is_empty() { b"null".as_slice() } else { &bytes };
        serde_json::from_slice(body).map_err(|e| ClientError::Unexpected { url, status, reason: e.to_string() })
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        unreachable(&self.base, e)
    }

    /// A Server-Sent Events stream of the events named `name`, their data parsed as `T`.
    /// Other events are skipped; `lagged` becomes [`Live::Lagged`]. The stream ends when the
    /// server closes the connection.
    async fn live<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        query: &impl Serialize,
        name: &'static str,
    ) -> Result<BoxStream<'static, Result<Live<T>>>> {
        let request = self.request(Method::GET, path).query(query).header(ACCEPT, "text/event-stream");
        let response = self.open(request).await?;
        let (base, url) = (self.base.clone(), response.url().to_string());
        let start = Some((response, sse::Parser::default(), VecDeque::new()));
        let events = stream::unfold(start, move |state| {
            let (base, url) = (base.clone(), url.clone());
            async move {
                let (mut response, mut parser, mut queue) = state?;
                loop {
                    while let Some(raw) = queue.pop_front() {
                        if let Some(item) = decode(&raw, name, &url) {
                            return Some((item, Some((response, parser, queue))));
                        }
                    }
                    match response.chunk().await {
                        Ok(Some(bytes)) => queue.extend(parser.feed(&bytes)),
                        Ok(None) => return None,
                        Err(e) => return Some((Err(unreachable(&base, e)), None)),
                    }
                }
            }
        });
        Ok(events.boxed())
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &impl Serialize) -> Result<T> {
        self.send(self.request(Method::GET, path).query(query)).await
    }

    async fn write<T: DeserializeOwned>(&self, method: Method, path: &str, body: &impl Serialize) -> Result<T> {
        self.send(self.request(method, path).json(body)).await
    }

    async fn delete_at<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.request(Method::DELETE, path)).await
    }

    // Access

    pub async fn login(&self, tenant: Option<&str>, username: &str, password: &str) -> Result<Session> {
        let req =
            LoginRequest { tenant: tenant.map(str::to_owned), username: username.into(), password: password.into() };
        self.write(Method::POST, "/api/v1/auth/login", &req).await
    }

    pub async fn logout(&self) -> Result<()> {
        self.send(self.request(Method::POST, "/api/v1/auth/logout")).await
    }

    pub async fn me(&self) -> Result<Me> {
        self.get("/api/v1/me", &()).await
    }

    pub async fn roles(&self) -> Result<Vec<Role>> {
        self.get("/api/v1/roles", &()).await
    }

    pub async fn tokens(&self, page: &PageQuery) -> Result<Page<ApiToken>> {
        self.get("/api/v1/tokens", page).await
    }

    pub async fn create_token(&self, req: &TokenCreate) -> Result<TokenCreated> {
        self.write(Method::POST, "/api/v1/tokens", req).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<ApiToken> {
        self.delete_at(&format!("/api/v1/tokens/{}", seg(id))).await
    }

    pub async fn users(&self, page: &PageQuery) -> Result<Page<User>> {
        self.get("/api/v1/users", page).await
    }

    pub async fn create_user(&self, req: &UserCreate) -> Result<User> {
        self.write(Method::POST, "/api/v1/users", req).await
    }

    pub async fn delete_user(&self, id: &str) -> Result<()> {
        self.delete_at(&format!("/api/v1/users/{}", seg(id))).await
    }

    // Devices

    pub async fn devices(&self, query: &DeviceQuery) -> Result<Page<Device>> {
        self.get("/api/v1/devices", query).await
    }

    pub async fn device(&self, id: &str) -> Result<Device> {
        self.get(&format!("/api/v1/devices/{}", seg(id)), &()).await
    }

    pub async fn create_device(&self, req: &DeviceCreate) -> Result<Device> {
        self.write(Method::POST, "/api/v1/devices", req).await
    }

    pub async fn update_device(&self, id: &str, req: &DeviceUpdate) -> Result<Device> {
        self.write(Method::PATCH, &format!("/api/v1/devices/{}", seg(id)), req).await
    }

    /// Retires a device; `wipe` also makes its agent erase its state and identity.
    pub async fn decommission_device(&self, id: &str, wipe: bool) -> Result<Device> {
        let path = format!("/api/v1/devices/{}/decommission", seg(id));
        self.send(self.request(Method::POST, &path).query(&[("wipe", wipe)])).await
    }

    /// Lets a pending device in.
    pub async fn approve_device(&self, id: &str) -> Result<Device> {
        self.send(self.request(Method::POST, &format!("/api/v1/devices/{}/approve", seg(id)))).await
    }

    /// Turns a pending device away (it is decommissioned).
    pub async fn reject_device(&self, id: &str) -> Result<Device> {
        self.send(self.request(Method::POST, &format!("/api/v1/devices/{}/reject", seg(id)))).await
    }

    /// What the device reported about itself; `None` before its first connection.
    pub async fn device_inventory(&self, id: &str) -> Result<Option<Inventory>> {
        self.get(&format!("/api/v1/devices/{}/inventory", seg(id)), &()).await
    }

    /// A device's reported and desired attributes.
    pub async fn device_attributes(&self, id: &str) -> Result<DeviceAttributes> {
        self.get(&format!("/api/v1/devices/{}/attributes", seg(id)), &()).await
    }

    /// Merges `patch` into the device's desired attributes (`null` removes a key).
    pub async fn patch_desired_attributes(
        &self,
        id: &str,
        patch: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<DeviceAttributes> {
        let path = format!("/api/v1/devices/{}/attributes/desired", seg(id));
        self.write(Method::PATCH, &path, patch).await
    }

    /// Issues a new secret for the device (returned this once); the old one stops working.
    pub async fn issue_device_credential(&self, id: &str) -> Result<DeviceCredential> {
        self.send(self.request(Method::POST, &format!("/api/v1/devices/{}/credentials", seg(id)))).await
    }

    /// The tenant's certificate authority for device certificates.
    pub async fn certificate_authority(&self) -> Result<CertificateAuthority> {
        self.get("/api/v1/certificate-authority", &()).await
    }

    /// Signs a client certificate for the device from its signing request (PEM).
    pub async fn issue_device_certificate(&self, id: &str, csr: &str) -> Result<IssuedCertificate> {
        let path = format!("/api/v1/devices/{}/certificates", seg(id));
        self.write(Method::POST, &path, &CertificateRequest { csr: csr.to_owned() }).await
    }

    /// The device's certificates, oldest first.
    pub async fn device_certificates(&self, id: &str, page: &PageQuery) -> Result<Page<DeviceCertificate>> {
        self.get(&format!("/api/v1/devices/{}/certificates", seg(id)), page).await
    }

    /// Revokes one of the device's certificates.
    pub async fn revoke_device_certificate(&self, id: &str, fingerprint: &str) -> Result<DeviceCertificate> {
        let path = format!("/api/v1/devices/{}/certificates/{}/revoke", seg(id), seg(fingerprint));
        self.send(self.request(Method::POST, &path)).await
    }

    // Remote sessions

    /// Opens a remote session on the device; attach with the ticket within its minute.
    pub async fn open_session(&self, device: &str, req: &SessionCreate) -> Result<SessionTicket> {
        self.write(Method::POST, &format!("/api/v1/devices/{}/sessions", seg(device)), req).await
    }

    /// The device's remote sessions, newest first.
    pub async fn sessions(&self, device: &str, page: &PageQuery) -> Result<Page<RemoteSession>> {
        self.get(&format!("/api/v1/devices/{}/sessions", seg(device)), page).await
    }

    pub async fn session(&self, device: &str, id: &str) -> Result<RemoteSession> {
        self.get(&format!("/api/v1/devices/{}/sessions/{}", seg(device), seg(id)), &()).await
    }

    /// Closes a session (its client and watchers are told who closed it).
    pub async fn close_session(&self, device: &str, id: &str) -> Result<RemoteSession> {
        let path = format!("/api/v1/devices/{}/sessions/{}/close", seg(device), seg(id));
        self.send(self.request(Method::POST, &path)).await
    }

    /// A read-only ticket to watch an open session.
    pub async fn watch_session(&self, device: &str, id: &str) -> Result<SessionTicket> {
        let path = format!("/api/v1/devices/{}/sessions/{}/watch", seg(device), seg(id));
        self.send(self.request(Method::POST, &path)).await
    }

    /// Sessions with a recording, the tenant's or one device's, newest first.
    pub async fn recordings(&self, device: Option<&str>, page: &PageQuery) -> Result<Page<RemoteSession>> {
        #[derive(Serialize)]
        struct Q<'a> {
            device_id: Option<&'a str>,
            limit: Option<u32>,
            cursor: Option<&'a str>,
        }
        let q = Q { device_id: device, limit: page.limit, cursor: page.cursor.as_deref() };
        self.get("/api/v1/recordings", &q).await
    }

    /// A session's recording (asciicast v2).
    pub async fn recording(&self, device: &str, id: &str) -> Result<Vec<u8>> {
        let path = format!("/api/v1/devices/{}/sessions/{}/recording", seg(device), seg(id));
        let response = self.open(self.request(Method::GET, &path)).await?;
        Ok(response.bytes().await.map_err(|e| self.unreachable(e))?.to_vec())
    }

    /// Asks a device, a group or a selector's devices for support bundles.
    pub async fn request_bundles(&self, req: &BundleCreate) -> Result<BundleRequested> {
        self.write(Method::POST, "/api/v1/support-bundles", req).await
    }

    /// Support bundles, newest first; of one device or one request.
    pub async fn bundles(&self, query: &BundleQuery) -> Result<Page<SupportBundle>> {
        self.get("/api/v1/support-bundles", query).await
    }

    pub async fn bundle(&self, id: &str) -> Result<SupportBundle> {
        self.get(&format!("/api/v1/support-bundles/{}", seg(id)), &()).await
    }

    /// A bundle request's progress per device.
    pub async fn bundle_progress(&self, request_id: &str) -> Result<BundleProgress> {
        self.get(&format!("/api/v1/support-bundles/requests/{}", seg(request_id)), &()).await
    }

    /// A stored bundle's archive, as a response to stream (its `Content-Disposition` names the
    /// file after the device and the time).
    pub async fn download_bundle(&self, id: &str) -> Result<reqwest::Response> {
        self.open(self.request(Method::GET, &format!("/api/v1/support-bundles/{}/download", seg(id)))).await
    }

    pub async fn remote_policy(&self) -> Result<RemotePolicy> {
        self.get("/api/v1/remote-policy", &()).await
    }

    pub async fn set_remote_policy(&self, policy: &RemotePolicy) -> Result<RemotePolicy> {
        self.write(Method::PUT, "/api/v1/remote-policy", policy).await
    }

    /// A device's logs as it sends them: the latest entries, then (with `follow`) new ones as
    /// they are written, until the server ends the stream or the returned stream is dropped.
    pub async fn logs(&self, device: &str, query: &LogQuery) -> Result<BoxStream<'static, Result<LogRecord>>> {
        #[derive(Serialize)]
        struct Q<'a> {
            source: LogSource,
            path: Option<&'a str>,
            unit: Option<String>,
            priority: Option<u8>,
            grep: Option<&'a str>,
            since: Option<u64>,
            lines: Option<u32>,
            follow: bool,
        }
        let q = Q {
            source: query.source,
            path: query.path.as_deref(),
            unit: (!query.units.is_empty()).then(|| query.units.join(",")),
            priority: query.priority,
            grep: query.grep.as_deref(),
            since: query.since_secs,
            lines: query.lines,
            follow: query.follow,
        };
        let path = format!("/api/v1/devices/{}/logs", seg(device));
        let response =
            self.open(self.request(Method::GET, &path).query(&q).header(ACCEPT, "application/x-ndjson")).await?;
        let (base, url) = (self.base.clone(), response.url().to_string());
        let start = Some((response, Vec::<u8>::new()));
        let records = stream::unfold(start, move |state| {
            let (base, url) = (base.clone(), url.clone());
            async move {
                let (mut response, mut pending) = state?;
                loop {
                    if let Some(end) = pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        if line.len() > MAX_LOG_LINE {
                            let reason = format!("a log line longer than {MAX_LOG_LINE} bytes");
                            return Some((Err(ClientError::Unexpected { url, status: StatusCode::OK, reason }), None));
                        }
                        let record = serde_json::from_slice(&line).map_err(|e| ClientError::Unexpected {
                            url: url.clone(),
                            status: StatusCode::OK,
                            reason: format!("a log line that is not a record: {e}"),
                        });
                        return Some((record, Some((response, pending))));
                    }
                    if pending.len() > MAX_LOG_LINE {
                        let reason = format!("a log line longer than {MAX_LOG_LINE} bytes");
                        return Some((Err(ClientError::Unexpected { url, status: StatusCode::OK, reason }), None));
                    }
                    match response.chunk().await {
                        Ok(Some(bytes)) => pending.extend_from_slice(&bytes),
                        Ok(None) => return None,
                        Err(e) => return Some((Err(unreachable(&base, e)), None)),
                    }
                }
            }
        });
        Ok(records.boxed())
    }

    /// Describes a path on a device (and, with `upload_sha256`, how much of that upload it kept).
    pub async fn file_stat(&self, device: &str, query: &FileStatQuery) -> Result<RemoteFile> {
        self.get(&format!("/api/v1/devices/{}/files/stat", seg(device)), query).await
    }

    /// Starts downloading a file (or a directory as tar) from a device: the response, to read
    /// in chunks. With `resume` = (offset, SHA-256 of the part already here), the server
    /// answers 206 from that offset if the file is still that one, or 200 with all of it.
    pub async fn download_file(
        &self,
        device: &str,
        path: &str,
        resume: Option<(u64, &str)>,
    ) -> Result<reqwest::Response> {
        let query = FileQuery { path: path.to_owned() };
        let mut request = self.request(Method::GET, &format!("/api/v1/devices/{}/files", seg(device))).query(&query);
        if let Some((offset, sha256)) = resume {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
            request = request.header(reqwest::header::IF_RANGE, format!("\"{sha256}\""));
        }
        self.open(request).await
    }

    /// Uploads a file to a device: `body` is its bytes from `facts.offset` on.
    pub async fn upload_file<S>(&self, device: &str, facts: &FileUpload, body: S) -> Result<FileWritten>
    where
        S: futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static,
    {
        let request = self
            .request(Method::PUT, &format!("/api/v1/devices/{}/files", seg(device)))
            .query(facts)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, facts.size.saturating_sub(facts.offset))
            .body(reqwest::Body::wrap_stream(body));
        self.send(request).await
    }

    /// The WebSocket URL a ticket attaches at.
    pub fn attach_url(&self, ticket: &SessionTicket) -> String {
        format!("{}{}", self.ws_base(), ticket.attach_path)
    }

    /// The WebSocket URL of one TCP connection through the open tunnel session `session`
    /// (authenticated with this client's token, as its opener).
    pub fn tunnel_connect_url(&self, session: &str) -> String {
        format!("{}/api/v1/sessions/{session}/connect", self.ws_base())
    }

    /// The server's base URL with `ws` for `http` (`wss` for `https`).
    fn ws_base(&self) -> String {
        self.base.replacen("http", "ws", 1)
    }

    /// Pre-registers many devices, all or nothing.
    pub async fn import_devices(&self, req: &DeviceImport) -> Result<Vec<Device>> {
        self.write(Method::POST, "/api/v1/devices/import", req).await
    }

    pub async fn delete_device(&self, id: &str) -> Result<()> {
        self.delete_at(&format!("/api/v1/devices/{}", seg(id))).await
    }

    // Enrollment tokens

    pub async fn enrollment_tokens(&self, page: &PageQuery) -> Result<Page<EnrollmentToken>> {
        self.get("/api/v1/enrollment-tokens", page).await
    }

    pub async fn create_enrollment_token(&self, req: &EnrollmentTokenCreate) -> Result<EnrollmentTokenCreated> {
        self.write(Method::POST, "/api/v1/enrollment-tokens", req).await
    }

    pub async fn enrollment_token(&self, id: &str) -> Result<EnrollmentToken> {
        self.get(&format!("/api/v1/enrollment-tokens/{}", seg(id)), &()).await
    }

    pub async fn revoke_enrollment_token(&self, id: &str) -> Result<EnrollmentToken> {
        self.delete_at(&format!("/api/v1/enrollment-tokens/{}", seg(id))).await
    }

    // Commands

    /// Queues a command for the target's devices; returns the batch.
    pub async fn create_commands(&self, req: &CommandCreate) -> Result<CommandBatch> {
        self.write(Method::POST, "/api/v1/commands", req).await
    }

    pub async fn commands(&self, query: &CommandQuery) -> Result<Page<Command>> {
        self.get("/api/v1/commands", query).await
    }

    pub async fn command(&self, id: &str) -> Result<Command> {
        self.get(&format!("/api/v1/commands/{}", seg(id)), &()).await
    }

    pub async fn cancel_command(&self, id: &str) -> Result<Command> {
        self.send(self.request(Method::POST, &format!("/api/v1/commands/{}/cancel", seg(id)))).await
    }

    pub async fn command_batch(&self, id: &str) -> Result<CommandBatch> {
        self.get(&format!("/api/v1/command-batches/{}", seg(id)), &()).await
    }

    // Telemetry and events

    /// A metric of a device over time, in buckets.
    pub async fn telemetry(&self, device: &str, query: &TelemetryQuery) -> Result<Series> {
        self.get(&format!("/api/v1/devices/{}/telemetry", seg(device)), query).await
    }

    /// Uploads an artifact: `len` bytes from `body`, with its facts. The server refuses it if
    /// the bytes differ from a declared hash or an offline signature does not verify.
    pub async fn upload_artifact<S>(&self, facts: &ArtifactUpload, len: u64, body: S) -> Result<Artifact>
    where
        S: futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static,
    {
        let request = self
            .request(Method::POST, "/api/v1/artifacts")
            .query(facts)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(body));
        self.send(request).await
    }

    pub async fn artifacts(&self, query: &ArtifactQuery) -> Result<Page<Artifact>> {
        self.get("/api/v1/artifacts", query).await
    }

    pub async fn artifact(&self, id: &str) -> Result<Artifact> {
        self.get(&format!("/api/v1/artifacts/{}", seg(id)), &()).await
    }

    pub async fn delete_artifact(&self, id: &str) -> Result<()> {
        self.open(self.request(Method::DELETE, &format!("/api/v1/artifacts/{}", seg(id)))).await.map(|_| ())
    }

    pub async fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        self.get("/api/v1/signing-keys", &()).await
    }

    pub async fn create_signing_key(&self, req: &SigningKeyCreate) -> Result<SigningKey> {
        self.send(self.request(Method::POST, "/api/v1/signing-keys").json(req)).await
    }

    pub async fn revoke_signing_key(&self, id: &str) -> Result<SigningKey> {
        self.send(self.request(Method::POST, &format!("/api/v1/signing-keys/{}/revoke", seg(id)))).await
    }

    pub async fn create_rollout(&self, req: &RolloutCreate) -> Result<Rollout> {
        self.send(self.request(Method::POST, "/api/v1/rollouts").json(req)).await
    }

    pub async fn rollouts(&self, query: &RolloutQuery) -> Result<Page<Rollout>> {
        self.get("/api/v1/rollouts", query).await
    }

    pub async fn rollout(&self, id: &str) -> Result<Rollout> {
        self.get(&format!("/api/v1/rollouts/{}", seg(id)), &()).await
    }

    pub async fn rollout_executions(&self, id: &str, query: &ExecutionQuery) -> Result<Page<Execution>> {
        self.get(&format!("/api/v1/rollouts/{}/executions", seg(id)), query).await
    }

    /// Every execution of a rollout, all pages.
    pub async fn all_rollout_executions(&self, id: &str, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        let mut query = ExecutionQuery { limit: Some(500), ..query.clone() };
        let mut all = Vec::new();
        loop {
            let page = self.rollout_executions(id, &query).await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(c) => query.cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// `action` is `start`, `pause`, `resume` or `cancel`.
    pub async fn steer_rollout(&self, id: &str, action: &str) -> Result<Rollout> {
        self.send(self.request(Method::POST, &format!("/api/v1/rollouts/{}/{}", seg(id), seg(action)))).await
    }

    pub async fn create_rollout_rule(&self, req: &RolloutRuleCreate) -> Result<RolloutRule> {
        self.send(self.request(Method::POST, "/api/v1/rollout-rules").json(req)).await
    }

    pub async fn rollout_rules(&self) -> Result<Vec<RolloutRule>> {
        self.get("/api/v1/rollout-rules", &()).await
    }

    pub async fn delete_rollout_rule(&self, id: &str) -> Result<()> {
        self.open(self.request(Method::DELETE, &format!("/api/v1/rollout-rules/{}", seg(id)))).await.map(|_| ())
    }

    pub async fn delete_rollout(&self, id: &str) -> Result<()> {
        self.open(self.request(Method::DELETE, &format!("/api/v1/rollouts/{}", seg(id)))).await.map(|_| ())
    }

    /// The newest value of every metric of a device.
    pub async fn latest_telemetry(&self, device: &str) -> Result<Latest> {
        self.get(&format!("/api/v1/devices/{}/telemetry/latest", seg(device)), &()).await
    }

    /// Live telemetry, until the server closes the stream.
    pub async fn telemetry_stream(
        &self,
        query: &TelemetryStreamQuery,
    ) -> Result<BoxStream<'static, Result<Live<TelemetryEvent>>>> {
        self.live("/api/v1/telemetry/stream", query, "telemetry").await
    }

    /// Events, newest first.
    pub async fn events(&self, query: &EventQuery) -> Result<Page<Event>> {
        self.get("/api/v1/events", query).await
    }

    /// Events as they happen, until the server closes the stream.
    pub async fn event_stream(&self, query: &EventStreamQuery) -> Result<BoxStream<'static, Result<Live<Event>>>> {
        self.live("/api/v1/events/stream", query, "event").await
    }

    // Groups

    pub async fn groups(&self, query: &GroupQuery) -> Result<Page<Group>> {
        self.get("/api/v1/groups", query).await
    }

    pub async fn group(&self, id: &str) -> Result<Group> {
        self.get(&format!("/api/v1/groups/{}", seg(id)), &()).await
    }

    pub async fn create_group(&self, req: &GroupCreate) -> Result<Group> {
        self.write(Method::POST, "/api/v1/groups", req).await
    }

    pub async fn update_group(&self, id: &str, req: &GroupUpdate) -> Result<Group> {
        self.write(Method::PATCH, &format!("/api/v1/groups/{}", seg(id)), req).await
    }

    pub async fn delete_group(&self, id: &str) -> Result<()> {
        self.delete_at(&format!("/api/v1/groups/{}", seg(id))).await
    }

    pub async fn group_members(&self, id: &str, query: &DeviceQuery) -> Result<Page<Device>> {
        self.get(&format!("/api/v1/groups/{}/members", seg(id)), query).await
    }

    pub async fn add_group_members(&self, id: &str, device_ids: Vec<String>) -> Result<Changed> {
        self.write(Method::POST, &format!("/api/v1/groups/{}/members/add", seg(id)), &GroupMembers { device_ids }).await
    }

    pub async fn remove_group_members(&self, id: &str, device_ids: Vec<String>) -> Result<Changed> {
        self.write(Method::POST, &format!("/api/v1/groups/{}/members/remove", seg(id)), &GroupMembers { device_ids })
            .await
    }

    // Tenants

    pub async fn tenants(&self, page: &PageQuery) -> Result<Page<Tenant>> {
        self.get("/api/v1/tenants", page).await
    }

    pub async fn create_tenant(&self, req: &TenantCreate) -> Result<Tenant> {
        self.write(Method::POST, "/api/v1/tenants", req).await
    }

    pub async fn tenant(&self, id: &str) -> Result<Tenant> {
        self.get(&format!("/api/v1/tenants/{}", seg(id)), &()).await
    }

    pub async fn update_tenant(&self, id: &str, req: &TenantUpdate) -> Result<Tenant> {
        self.write(Method::PATCH, &format!("/api/v1/tenants/{}", seg(id)), req).await
    }
}

fn unreachable(base: &str, e: reqwest::Error) -> ClientError {
    // The innermost cause ("Connection refused", "invalid peer certificate") is the useful one.
    let mut innermost: &dyn std::error::Error = &e;
    while let Some(s) = innermost.source() {
        innermost = s;
    }
    ClientError::Unreachable { url: base.to_owned(), reason: innermost.to_string() }
}

/// One item of a live stream: `None` for events of other names.
fn decode<T: DeserializeOwned>(raw: &sse::SseEvent, name: &str, url: &str) -> Option<Result<Live<T>>> {
    let unexpected = |reason: String| ClientError::Unexpected { url: url.to_owned(), status: StatusCode::OK, reason };
    match raw.event.as_str() {
        "lagged" => Some(raw.data.trim().parse().map(Live::Lagged).map_err(|e| unexpected(format!("lagged: {e}")))),
        n if n == name => Some(serde_json::from_str(&raw.data).map(Live::Item).map_err(|e| unexpected(e.to_string()))),
        _ => None,
    }
}

/// A path segment with every byte that is not plainly safe percent-encoded.
fn seg(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
