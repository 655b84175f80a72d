//! Helpers for the remote-support tests: the real `baton-agent` binary as a child process with
//! its own config, a terminal client speaking the attach WebSocket, and journal files written
//! by `systemd-journal-remote` for the agent to read.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use baton_proto::api::remote::{AttachClientMessage, AttachServerMessage};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use super::BATON;

/// The `baton-agent` binary, built once per test process (it belongs to another crate).
pub fn agent_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "baton-agent", "--bin", "baton-agent"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the baton-agent binary failed");
        Path::new(BATON).with_file_name(format!("baton-agent{}", std::env::consts::EXE_SUFFIX))
    })
}

/// A `baton-agent` process with its own state directory; killed when dropped.
pub struct Agent {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Agent {
    /// Starts an agent enrolling at `server` with `token` as `serial`; `remote` is the body of
    /// its `[remote]` table (empty: everything off).
    pub fn start(server: &str, token: &str, serial: &str, remote: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("agent.toml");
        let text = format!(
            "server = \"{server}\"\nenrollment_token = \"{token}\"\nserial = \"{serial}\"\nstate_dir = \"{}\"\n\n[remote]\n{remote}\n",
            dir.path().join("state").display()
        );
        std::fs::write(&config, text).expect("agent config");
        Self::start_with(dir, &config)
    }

    fn start_with(dir: tempfile::TempDir, config: &Path) -> Self {
        Agent { child: Self::spawn(config), dir }
    }

    fn spawn(config: &Path) -> Child {
        Command::new(agent_binary())
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .env("SHELL", "/bin/sh")
            .env_remove("BATON_AGENT_REMOTE_TERMINAL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("baton-agent starts")
    }

    /// Kills the agent and starts it again on the same state and config.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let config = self.dir.path().join("agent.toml");
        self.child = Self::spawn(&config);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A client on a session's attach WebSocket.
pub struct Term {
    ws: Ws,
    /// Everything the device printed so far.
    pub output: String,
    /// The `closed` message, once it came.
    pub closed: Option<(String, Option<i32>)>,
}

impl Term {
    /// Attaches at `url` and waits for `opened` (or the refusal: then `closed` is set).
    pub async fn attach(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("attach WebSocket opens");
        let mut term = Term { ws, output: String::new(), closed: None };
        match term.next_control().await {
            Some(AttachServerMessage::Opened { .. }) => {}
            Some(AttachServerMessage::Closed { reason, exit_code }) => term.closed = Some((reason, exit_code)),
            None => panic!("the attach WebSocket ended without a word"),
        }
        term
    }

    async fn next_control(&mut self) -> Option<AttachServerMessage> {
        loop {
            match self.ws.next().await? {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).expect("a control message")),
                Ok(Message::Binary(b)) => self.output.push_str(&String::from_utf8_lossy(&b)),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    pub async fn type_text(&mut self, text: &str) {
        self.ws.send(Message::Binary(text.as_bytes().to_vec().into())).await.expect("typed");
    }

    pub async fn resize(&mut self, cols: u16, rows: u16) {
        let text = serde_json::to_string(&AttachClientMessage::Resize { cols, rows }).expect("json");
        self.ws.send(Message::Text(text.into())).await.expect("resized");
    }

    /// Reads output until it contains `needle` (within a minute), or the session closes.
    pub async fn expect(&mut self, needle: &str) {
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            while !self.output.contains(needle) {
                match self.ws.next().await {
                    Some(Ok(Message::Binary(b))) => self.output.push_str(&String::from_utf8_lossy(&b)),
                    Some(Ok(Message::Text(t))) => {
                        if let Ok(AttachServerMessage::Closed { reason, exit_code }) = serde_json::from_str(&t) {
                            self.closed = Some((reason, exit_code));
                            return false;
                        }
                    }
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => return false,
                }
            }
            true
        })
        .await;
        assert!(
            matches!(found, Ok(true)),
            "the terminal never showed {needle:?}; closed: {:?}; output: {:?}",
            self.closed,
            self.output
        );
    }

    /// Reads until the server says the session ended; the reason and exit code.
    pub async fn until_closed(&mut self) -> (String, Option<i32>) {
        if let Some(closed) = &self.closed {
            return closed.clone();
        }
        let closed = tokio::time::timeout(Duration::from_secs(90), async {
            loop {
                match self.next_control().await {
                    Some(AttachServerMessage::Closed { reason, exit_code }) => return Some((reason, exit_code)),
                    Some(_) => {}
                    None => return None,
                }
            }
        })
        .await
        .expect("the session ends within 90 s")
        .expect("the server says why the session ended");
        self.closed = Some(closed.clone());
        closed
    }

    /// Closes the WebSocket, as a client that leaves does.
    pub async fn leave(mut self) {
        let _ = self.ws.close(None).await;
        while let Some(Ok(_)) = self.ws.next().await {}
    }
}

/// An agent with `[remote]` body `remote`, enrolled at `url` as `serial` with a fresh
/// enrollment token, and its device once it is online.
pub async fn enrolled(
    client: &baton_client::Client,
    url: &str,
    serial: &str,
    remote: &str,
) -> (Agent, baton_proto::api::devices::Device) {
    use baton_proto::api::{devices::DeviceQuery, enrollment::EnrollmentTokenCreate};
    let req = EnrollmentTokenCreate { name: format!("for-{serial}"), ..EnrollmentTokenCreate::default() };
    let token = client.create_enrollment_token(&req).await.expect("enrollment token").secret;
    let agent = Agent::start(url, &token, serial, remote);
    let device = baton_testkit::eventually(&format!("{serial} is online"), || async {
        let page = client.devices(&DeviceQuery { q: Some(serial.into()), ..Default::default() }).await.ok()?;
        page.items.into_iter().find(|d| d.serial.as_deref() == Some(serial) && d.connectivity.online)
    })
    .await;
    (agent, device)
}

/// Makes tenant `other` with its admin `olga` (through `admin`, of the default tenant) and
/// signs in as her at `url`: someone of another tenant, for the refusals.
pub async fn other_tenant(admin: &baton_client::Client, url: &str) -> baton_client::Client {
    use baton_proto::api::{access::UserCreate, tenants::TenantCreate};
    let password = "other-password-123";
    let olga = UserCreate { username: "olga".into(), password: password.into(), role: None };
    let tenant = TenantCreate { name: "other".into(), display_name: None, admin: Some(olga) };
    admin.create_tenant(&tenant).await.expect("tenant");
    let other = baton_client::Client::new(url, None, None).expect("client");
    let session = other.login(Some("other"), "olga", password).await.expect("login");
    other.with_token(session.token)
}

/// The `baton` CLI as a user runs it against `server` with `token`: its own empty config dir,
/// stdin not a terminal (empty).
pub fn cli(server: &str, token: &str, args: &[&str]) -> std::process::Output {
    let config = tempfile::tempdir().expect("config dir");
    Command::new(BATON)
        .args(args)
        .env("BATON_CONFIG_DIR", config.path())
        .env("BATON_SERVER", server)
        .env("BATON_TOKEN", token)
        .stdin(Stdio::null())
        .output()
        .expect("baton runs")
}

/// A program on a pseudo-terminal of its own, as in a terminal window: the test types on its
/// keyboard, resizes its window and reads what it shows. Killed when dropped.
pub struct LocalPty {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    master: Box<dyn portable_pty::MasterPty + Send>,
    keyboard: std::sync::Mutex<Box<dyn std::io::Write + Send>>,
    screen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl LocalPty {
    /// Runs `sh -c script` on a new terminal of `cols` × `rows` with `env`.
    pub fn run(script: &str, env: &[(&str, &str)], cols: u16, rows: u16) -> Self {
        use portable_pty::{CommandBuilder, PtySize, native_pty_system};
        let pair = native_pty_system()
            .openpty(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 })
            .expect("a pseudo-terminal opens");
        let mut command = CommandBuilder::new("sh");
        command.args(["-c", script]);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = pair.slave.spawn_command(command).expect("the program starts on the terminal");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("terminal reader");
        let keyboard = pair.master.take_writer().expect("terminal writer");
        let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let shown = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
                if n == 0 {
                    break;
                }
                shown.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&buf[..n]);
            }
        });
        LocalPty { child, master: pair.master, keyboard: std::sync::Mutex::new(keyboard), screen }
    }

    pub fn type_text(&self, text: &str) {
        use std::io::Write;
        let mut keyboard = self.keyboard.lock().unwrap_or_else(|p| p.into_inner());
        keyboard.write_all(text.as_bytes()).and_then(|()| keyboard.flush()).expect("typed");
    }

    /// Changes the window's size (the programs on it get SIGWINCH).
    pub fn resize(&self, cols: u16, rows: u16) {
        let size = portable_pty::PtySize { rows, cols, pixel_width: 0, pixel_height: 0 };
        self.master.resize(size).expect("resized");
    }

    /// Everything shown so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Waits until the screen shows `needle`.
    pub async fn expect(&self, needle: &str) {
        let what = format!("the terminal shows {needle:?}");
        baton_testkit::eventually(&what, || async {
            let screen = self.screen();
            if screen.contains(needle) { Ok(()) } else { Err(format!("the screen: {screen:?}")) }
        })
        .await;
    }
}

impl Drop for LocalPty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Term {
    /// Sends `data` in frames of 16 KiB, as a terminal pasting it does, reading the output that
    /// comes meanwhile (a client that only wrote would stall the session by itself).
    pub async fn paste(&mut self, data: &[u8]) {
        use futures::FutureExt;
        for chunk in data.chunks(16 * 1024) {
            self.ws.send(Message::Binary(chunk.to_vec().into())).await.expect("pasted");
            while let Some(Some(Ok(frame))) = self.ws.next().now_or_never() {
                if let Message::Binary(b) = frame {
                    self.output.push_str(&String::from_utf8_lossy(&b));
                }
            }
        }
    }

    /// The number printed after `pid=` (a marker the test's command printed).
    pub fn printed_pid(&self) -> u32 {
        let pid = self.output.split("pid=").nth(1).and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next());
        pid.and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no pid= in {:?}", self.output))
    }
}

/// A metric's value on the server's `/metrics`: the sum of its samples, 0 when it has none.
pub async fn metric(server: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{server}/metrics")).await.expect("metrics").text().await.expect("metrics text");
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What `/proc` says of a process: resident memory (KiB), bytes it wrote, whether it still
/// runs (a zombie, killed and not reaped, does not) and whether it sleeps (waits, e.g. in a
/// write; a busy process preempted is runnable instead). `None` once it is gone.
pub fn process(pid: u32) -> Option<Process> {
    let field = |file: &str, key: &str| -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit(')').next()?.split_whitespace().next()?.to_owned();
    Some(Process {
        rss_kib: field("status", "VmRSS:").unwrap_or(0),
        written: field("io", "wchar:").unwrap_or(0),
        alive: state != "Z" && state != "X",
        sleeping: state == "S",
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub rss_kib: u64,
    pub written: u64,
    pub alive: bool,
    pub sleeping: bool,
}

/// Writes journal entries (`(seconds ago, unit, priority, message)`) into `dir` as a real journal
/// file, through `systemd-journal-remote`.
pub fn journal(dir: &Path, entries: &[(i64, &str, u8, &str)]) {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let now = chrono::Utc::now().timestamp_micros();
    let mut export = String::new();
    for (ago, unit, priority, message) in entries {
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={seq}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n\
             _SYSTEMD_UNIT={unit}\nSYSLOG_IDENTIFIER={}\nPRIORITY={priority}\nMESSAGE={message}\n\n",
            now - ago * 1_000_000,
            unit.trim_end_matches(".service"),
        ));
    }
    let mut child = Command::new(baton_testkit::tools::JOURNAL_REMOTE)
        .arg(format!("--output={}/remote.journal", dir.display()))
        .args(["--split-mode=none", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-journal-remote starts");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), export.as_bytes()).expect("entries written");
    let out = child.wait_with_output().expect("systemd-journal-remote ends");
    assert!(out.status.success(), "systemd-journal-remote: {}", String::from_utf8_lossy(&out.stderr));
}
