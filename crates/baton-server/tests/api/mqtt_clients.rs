//! Real MQTT clients for the MQTT tests, run as subprocesses against the test server's plain
//! listener: Debian's `mosquitto-clients` (`mosquitto_pub`, `mosquitto_sub`, `mosquitto_rr`, with
//! `-d` so their output shows the reason codes the server sent) and a scripted paho-mqtt device
//! (`tests/mqtt/device.py`, one JSON instruction per line in, one JSON event per line out). Every
//! wait has a deadline and ends on something observed — an output line, an API state — never on
//! a sleep.

use std::{collections::VecDeque, net::SocketAddr, process::Stdio, time::Duration};

use baton_proto::api::{
    commands::{Command, CommandCreate, CommandSpec, CommandState, CommandTarget},
    devices::DeviceCreate,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command as Process},
    time::timeout,
};

use crate::support::TestApp;

/// The longest any one wait may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// The two protocol versions every behaviour is proved on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

impl Version {
    pub const BOTH: [Version; 2] = [Version::V311, Version::V5];

    /// This version's code when 3.1.1 and 5 differ (CONNACK refusals, SUBACK denials).
    pub fn pick(self, v311: u8, v5: u8) -> u8 {
        match self {
            Self::V311 => v311,
            Self::V5 => v5,
        }
    }

    fn mosquitto(self) -> &'static str {
        self.pick_str("mqttv311", "mqttv5")
    }

    fn paho(self) -> &'static str {
        self.pick_str("3.1.1", "5")
    }

    fn pick_str(self, v311: &'static str, v5: &'static str) -> &'static str {
        if self == Self::V311 { v311 } else { v5 }
    }
}

pub use baton_testkit::{Tool, require};

/// A device with an issued credential: `(id, secret)`.
pub async fn device(app: &TestApp, serial: &str) -> (String, String) {
    let created =
        app.admin.create_device(&DeviceCreate { serial: serial.into(), ..Default::default() }).await.expect("device");
    let credential = app.admin.issue_device_credential(&created.id).await.expect("credential");
    assert_eq!(credential.device_id, created.id);
    (created.id, credential.secret)
}

/// Queues a command for one device through the API; returns the command's id.
pub async fn send_command(app: &TestApp, device_id: &str, command: CommandSpec, ttl_secs: Option<u32>) -> String {
    let target = CommandTarget { device_ids: vec![device_id.to_owned()], ..Default::default() };
    let req = CommandCreate { target, command, ttl_secs, idempotency_key: None };
    let batch = app.admin.create_commands(&req).await.expect("command queued");
    let query = baton_proto::api::commands::CommandQuery { batch: Some(batch.id), ..Default::default() };
    let listed = app.admin.commands(&query).await.expect("commands").items;
    assert_eq!(listed.len(), 1);
    listed[0].id.clone()
}

/// A `custom` command, the kind MQTT devices handle.
pub fn custom(name: &str, params: Value) -> CommandSpec {
    CommandSpec::Custom { name: name.into(), params }
}

pub use baton_testkit::eventually;

/// Waits until the command reaches `state`, and returns it.
pub async fn command_reaches(app: &TestApp, id: &str, state: CommandState) -> Command {
    eventually(&format!("command {id} is {state:?}"), || async {
        let command = app.admin.command(id).await.expect("command");
        assert!(!command.state.is_final() || command.state == state, "{id} ended {:?}, not {state:?}", command.state);
        (command.state == state).then_some(command)
    })
    .await
}

/// Waits until the device's `connectivity.online` is `online`.
pub async fn online_becomes(app: &TestApp, id: &str, online: bool) {
    eventually(&format!("device {id} is online = {online}"), || async {
        (app.admin.device(id).await.expect("device").connectivity.online == online).then_some(())
    })
    .await
}

/// The newest value of each of a device's metrics.
pub async fn latest(app: &TestApp, id: &str) -> std::collections::BTreeMap<String, f64> {
    app.admin.latest_telemetry(id).await.expect("latest telemetry").metrics
}

/// How a client logs in.
#[derive(Debug, Clone, Default)]
pub struct Login {
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Login {
    /// Device id as user name, secret as password.
    pub fn device(id: &str, secret: &str) -> Self {
        Self { user: Some(id.into()), password: Some(secret.into()) }
    }

    /// The secret alone as user name (ThingsBoard's access token).
    pub fn token(secret: &str) -> Self {
        Self { user: Some(secret.into()), password: None }
    }

    /// A user name without password (`provision`).
    pub fn user(name: &str) -> Self {
        Self { user: Some(name.into()), password: None }
    }

    pub fn anonymous() -> Self {
        Self::default()
    }
}

/// The mosquitto command-line clients, pointed at the test server.
pub struct Mosquitto {
    addr: SocketAddr,
    version: Version,
    login: Login,
}

/// What `mosquitto_pub -d` reported.
#[derive(Debug)]
pub struct Published {
    /// The CONNACK's code (3.1.1 return code or 5 reason code), if one came.
    pub connack: Option<u8>,
    /// The PUBACK's reason code, if one came (QoS 1).
    pub puback: Option<u8>,
    pub output: String,
}

impl Mosquitto {
    pub fn new(app: &TestApp, version: Version, login: Login) -> Self {
        Self { addr: app.mqtt_addr, version, login }
    }

    fn command(&self, program: &str) -> Process {
        // Line-buffered, so a line is readable as soon as it is printed, not when the pipe's
        // buffer fills.
        let mut command = Process::new("stdbuf");
        command
            .args(["-oL", program, "-d", "-h", &self.addr.ip().to_string(), "-p", &self.addr.port().to_string()])
            .args(["-V", self.version.mosquitto()])
            .kill_on_drop(true);
        if let Some(user) = &self.login.user {
            command.args(["-u", user]);
        }
        if let Some(password) = &self.login.password {
            command.args(["-P", password]);
        }
        command
    }

    /// Publishes one message with QoS 1 and reports the codes the server answered with.
    pub async fn publish(&self, topic: &str, message: &str) -> Published {
        let mut command = self.command("mosquitto_pub");
        command.args(["-q", "1", "-t", topic, "-m", message]);
        let output = timeout(PATIENCE, command.output()).await.expect("mosquitto_pub finishes").expect("runs");
        let output = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        Published {
            connack: number_after(&output, "received CONNACK ("),
            puback: number_after(&output, "received PUBACK (Mid: 1, RC:"),
            output,
        }
    }

    /// Starts `mosquitto_sub -v` on `filters` (QoS 1, plus `extra` arguments) and waits for its
    /// SUBACK.
    pub async fn subscribe(&self, filters: &[&str], extra: &[&str]) -> Subscriber {
        let mut command = self.command("mosquitto_sub");
        command.args(["-v", "-q", "1"]).args(extra);
        for filter in filters {
            command.args(["-t", filter]);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("mosquitto_sub starts");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut subscriber = Subscriber { child, lines, granted: Vec::new() };
        loop {
            let line = subscriber.line().await.expect("mosquitto_sub subscribes");
            if let Some(code) = number_after(&line, "received CONNACK (")
                && code != 0
            {
                panic!("mosquitto_sub was refused: CONNACK {code}");
            }
            if let Some((_, codes)) = line.strip_prefix("Subscribed (mid: ").and_then(|rest| rest.split_once("): ")) {
                subscriber.granted = codes.split(", ").map(|c| c.trim().parse().expect("a code")).collect();
                return subscriber;
            }
        }
    }

    /// `mosquitto_rr`: subscribes to `response_topic`, publishes `message` to `topic` on the same
    /// connection, and returns the JSON answer.
    pub async fn request(&self, topic: &str, response_topic: &str, message: &str) -> Value {
        let mut command = self.command("mosquitto_rr");
        command.args(["-t", topic, "-e", response_topic, "-m", message, "-W", "10"]);
        let output = timeout(PATIENCE, command.output()).await.expect("mosquitto_rr finishes").expect("runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let answer = stdout.lines().rfind(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no answer: {stdout}"));
        serde_json::from_str(answer).expect("the answer is JSON")
    }
}

/// The number in `text` right after `marker`.
fn number_after(text: &str, marker: &str) -> Option<u8> {
    let rest = &text[text.find(marker)? + marker.len()..];
    rest[..rest.find(|c: char| !c.is_ascii_digit())?].parse().ok()
}

/// A running `mosquitto_sub`.
pub struct Subscriber {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// The SUBACK's codes, one per filter: the granted QoS, or a refusal.
    pub granted: Vec<u8>,
}

impl Subscriber {
    async fn line(&mut self) -> Option<String> {
        timeout(PATIENCE, self.lines.next_line()).await.expect("mosquitto_sub prints in time").expect("reads")
    }

    /// The next message: `(topic, payload)`.
    pub async fn message(&mut self) -> (String, String) {
        loop {
            let line = self.line().await.expect("mosquitto_sub delivers a message before it ends");
            if line.starts_with("Client ") || line.starts_with("Subscribed (") {
                continue; // debug output
            }
            let (topic, payload) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            return (topic.to_owned(), payload.to_owned());
        }
    }

    /// The next message, with its payload parsed as JSON.
    pub async fn json(&mut self) -> (String, Value) {
        let (topic, payload) = self.message().await;
        (topic, serde_json::from_str(&payload).unwrap_or_else(|e| panic!("not JSON ({e}): {payload}")))
    }

    /// Waits for the client to exit by itself (`-C n`, `-W secs`).
    pub async fn finished(&mut self) {
        timeout(PATIENCE, self.child.wait()).await.expect("mosquitto_sub exits").expect("waits");
    }

    /// Kills the client abruptly (SIGKILL: no DISCONNECT, the socket just closes).
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("killed");
    }
}

/// The scripted paho-mqtt device.
pub struct Paho {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Events read while waiting for another kind.
    queue: VecDeque<Value>,
    port: u16,
    version: Version,
}

/// A paho connection's session options.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub client_id: String,
    /// 3.1.1 clean session / 5 clean start.
    pub clean: bool,
    /// MQTT 5 Session Expiry Interval, in seconds.
    pub session_expiry: u32,
    pub will: Option<(String, String)>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self { client_id: String::new(), clean: true, session_expiry: 0, will: None }
    }
}

impl Paho {
    pub async fn start(app: &TestApp, version: Version) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mqtt/device.py");
        let mut child = Process::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { child, stdin, lines, queue: VecDeque::new(), port: app.mqtt_addr.port(), version }
    }

    /// Connects with a clean session; returns the CONNACK's code.
    pub async fn connect(&mut self, login: &Login) -> u8 {
        self.connect_with(login, &SessionOptions::default()).await.0
    }

    /// Connects; returns the CONNACK's code (paho reports 3.1.1 codes as their MQTT 5
    /// equivalents) and its session-present flag.
    pub async fn connect_with(&mut self, login: &Login, options: &SessionOptions) -> (u8, bool) {
        let will = options.will.as_ref().map(|(topic, payload)| json!({"topic": topic, "payload": payload}));
        self.send(json!({"op": "connect", "port": self.port, "version": self.version.paho(),
            "username": login.user, "password": login.password, "client_id": options.client_id,
            "clean": options.clean, "session_expiry": options.session_expiry, "will": will}))
            .await;
        let connack = self.event("connack").await;
        (code(&connack["rc"]), connack["session_present"] == json!(true))
    }

    /// Subscribes with QoS 1; returns the SUBACK's code.
    pub async fn subscribe(&mut self, filter: &str) -> u8 {
        self.send(json!({"op": "subscribe", "topic": filter, "qos": 1})).await;
        let suback = self.event("suback").await;
        code(&suback["codes"][0])
    }

    /// Publishes with QoS 1; returns the PUBACK's reason code.
    pub async fn publish(&mut self, topic: &str, payload: &str) -> u8 {
        self.send(json!({"op": "publish", "topic": topic, "payload": payload, "qos": 1})).await;
        code(&self.event("puback").await["rc"])
    }

    /// The next message the server sent: `(topic, payload as JSON)`.
    pub async fn message(&mut self) -> (String, Value) {
        let message = self.event("message").await;
        let payload = message["payload"].as_str().expect("payload");
        let payload = serde_json::from_str(payload).unwrap_or_else(|e| panic!("not JSON ({e}): {payload}"));
        (message["topic"].as_str().expect("topic").to_owned(), payload)
    }

    /// The next message the server sent: `(topic, payload as text)`.
    pub async fn message_text(&mut self) -> (String, String) {
        let message = self.event("message").await;
        let payload = message["payload"].as_str().expect("payload").to_owned();
        (message["topic"].as_str().expect("topic").to_owned(), payload)
    }

    /// Sends DISCONNECT and waits until the connection is closed.
    pub async fn disconnect(&mut self) {
        self.send(json!({"op": "disconnect"})).await;
        self.event("disconnected").await;
    }

    async fn send(&mut self, step: Value) {
        let line = format!("{step}\n");
        self.stdin.write_all(line.as_bytes()).await.expect("the paho device reads");
        self.stdin.flush().await.expect("flush");
    }

    /// The first event of `kind`, keeping the others for later.
    async fn event(&mut self, kind: &str) -> Value {
        if let Some(at) = self.queue.iter().position(|e| e["event"] == kind) {
            return self.queue.remove(at).expect("queued");
        }
        loop {
            let line = timeout(PATIENCE, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("the paho device reports `{kind}` in time; also seen: {:?}", self.queue))
                .expect("reads")
                .unwrap_or_else(|| panic!("the paho device ended before `{kind}`"));
            let event: Value = serde_json::from_str(&line).expect("a JSON event");
            assert_ne!(event["event"], "error", "the paho device failed: {event}");
            if event["event"] == kind {
                return event;
            }
            self.queue.push_back(event);
        }
    }
}

impl Drop for Paho {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn code(value: &Value) -> u8 {
    value.as_u64().and_then(|c| u8::try_from(c).ok()).unwrap_or_else(|| panic!("not a reason code: {value}"))
}
