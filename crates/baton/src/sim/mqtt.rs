//! Simulated devices that speak MQTT instead of running the agent, for `baton demo`: sensors on
//! Baton's own topics, and a gateway in ThingsBoard's dialect with sensors behind it. Each holds
//! a real MQTT connection to the server's listener (Baton's codec as the client), reconnects
//! when it drops, reports telemetry, follows its desired `interval_secs` and answers commands.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, bail};
use baton_proto::mqtt::{Ack, Connect, Packet, Properties, Publish, Subscribe, Subscription, Version, decode, encode};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
    time::{Instant, interval_at},
};

const KEEP_ALIVE: u16 = 30;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Who a simulated MQTT device is and how it logs in.
#[derive(Clone)]
pub enum Role {
    /// A sensor on `baton/v1/me/…`, logging in with its id and secret.
    Sensor { device_id: String, secret: String },
    /// A ThingsBoard-style gateway (its secret as the user name) relaying `sensors` by name.
    Gateway { secret: String, sensors: Vec<String> },
}

/// Runs one simulated device until `stop` turns true, reconnecting after failures.
pub async fn run(addr: SocketAddr, role: Role, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let session = tokio::select! {
            ended = session(addr, &role) => ended,
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Err(e) = session {
            tracing::debug!(error = %e, "simulated MQTT device disconnected");
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn session(addr: SocketAddr, role: &Role) -> anyhow::Result<()> {
    let (username, password) = match role {
        Role::Sensor { device_id, secret } => (device_id.clone(), Some(secret.clone())),
        Role::Gateway { secret, .. } => (secret.clone(), None),
    };
    let mut client = Client::connect(addr, username, password).await?;
    match role {
        Role::Sensor { .. } => client.subscribe(&["baton/v1/me/commands/+", "baton/v1/me/config"]).await?,
        Role::Gateway { sensors, .. } => {
            client.subscribe(&["v1/gateway/rpc", "v1/devices/me/rpc/request/+"]).await?;
            for name in sensors {
                client.publish("v1/gateway/connect", json!({"device": name}).to_string()).await?;
            }
        }
    }
    let mut every = DEFAULT_INTERVAL;
    let mut tick = interval_at(Instant::now(), every);
    let mut ping = interval_at(Instant::now() + Duration::from_secs(u64::from(KEEP_ALIVE)), Duration::from_secs(20));
    let mut step: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                step += 1;
                match role {
                    Role::Sensor { .. } => {
                        let (temp, humidity) = reading(step, 0);
                        client.publish("baton/v1/me/telemetry", json!({"temp": temp, "humidity": humidity}).to_string()).await?;
                    }
                    Role::Gateway { sensors, .. } => {
                        let now = chrono::Utc::now().timestamp_millis();
                        let batch: serde_json::Map<String, Value> = sensors.iter().enumerate().map(|(i, name)| {
                            let (temp, humidity) = reading(step, i as u64 + 1);
                            (name.clone(), json!([{"ts": now, "values": {"temp": temp, "humidity": humidity}}]))
                        }).collect();
                        client.publish("v1/gateway/telemetry", Value::Object(batch).to_string()).await?;
                    }
                }
            }
            _ = ping.tick() => client.send(&Packet::PingReq).await?,
            packet = client.next() => {
                let Packet::Publish(p) = packet? else { continue };
                if let Some(id) = p.packet_id {
                    client.send(&Packet::PubAck(Ack::new(id, 0))).await?;
                }
                if p.topic == "baton/v1/me/config" {
                    let wanted = serde_json::from_slice::<Value>(&p.payload).ok()
                        .and_then(|c| c.get("interval_secs").and_then(Value::as_u64))
                        .map_or(DEFAULT_INTERVAL, |s| Duration::from_secs(s.clamp(1, 3600)));
                    if wanted != every {
                        every = wanted;
                        tick = interval_at(Instant::now() + every, every);
                    }
                } else if let Some(command) = p.topic.strip_prefix("baton/v1/me/commands/") {
                    let answer = answer_command(&p.payload);
                    client.publish(&format!("baton/v1/me/commands/{command}/result"), answer.to_string()).await?;
                } else if let Some(n) = p.topic.strip_prefix("v1/devices/me/rpc/request/") {
                    let request: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                    let method = request["method"].as_str().unwrap_or_default();
                    let data = if method == "ping" { json!({"pong": true}) } else { json!({"ok": true, "method": method}) };
                    client.publish(&format!("v1/devices/me/rpc/response/{n}"), data.to_string()).await?;
                } else if p.topic == "v1/gateway/rpc" {
                    let request: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                    let method = request["data"]["method"].as_str().unwrap_or_default();
                    let data = if method == "ping" { json!({"pong": true}) } else { json!({"ok": true, "method": method}) };
                    let reply = json!({"device": request["device"], "id": request["data"]["id"], "data": data});
                    client.publish("v1/gateway/rpc", reply.to_string()).await?;
                }
            }
        }
    }
}

/// A cold room's temperature and humidity, drifting slowly and differently per sensor.
fn reading(step: u64, sensor: u64) -> (f64, f64) {
    let phase = (step as f64 / 12.0) + sensor as f64;
    let temp = 4.0 + 1.5 * phase.sin() + sensor as f64 * 0.3;
    let humidity = 70.0 + 5.0 * (phase / 2.0).cos();
    ((temp * 10.0).round() / 10.0, humidity.round())
}

/// What a sensor answers: `ping` and custom commands succeed; the rest need an agent.
fn answer_command(payload: &[u8]) -> Value {
    let envelope: Value = serde_json::from_slice(payload).unwrap_or_default();
    match envelope["command"]["type"].as_str() {
        Some("ping") => json!({"state": "succeeded", "result": {"output": {"pong": true}}}),
        Some("custom") => json!({"state": "succeeded",
            "result": {"output": {"done": envelope["command"]["name"], "params": envelope["command"]["params"]}}}),
        other => json!({"state": "failed",
            "result": {"error": format!("a sensor cannot run `{}` commands", other.unwrap_or("unknown"))}}),
    }
}

/// A minimal MQTT 5 client: enough for a simulated device.
struct Client {
    stream: TcpStream,
    input: Vec<u8>,
    next_id: u16,
}

impl Client {
    async fn connect(addr: SocketAddr, username: String, password: Option<String>) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to MQTT at {addr}"))?;
        let mut client = Self { stream, input: Vec::new(), next_id: 0 };
        let connect = Connect {
            version: Version::V5,
            client_id: String::new(),
            clean_start: true,
            keep_alive: KEEP_ALIVE,
            username: Some(username),
            password: password.map(String::into_bytes),
            will: None,
            properties: Properties::default(),
        };
        client.send(&Packet::Connect(connect)).await?;
        match client.next().await? {
            Packet::ConnAck(ack) if ack.reason == 0 => Ok(client),
            Packet::ConnAck(ack) => {
                bail!("refused ({:#04x}): {}", ack.reason, ack.properties.reason_string().unwrap_or_default())
            }
            other => bail!("expected CONNACK, got {}", other.name()),
        }
    }

    async fn subscribe(&mut self, filters: &[&str]) -> anyhow::Result<()> {
        let subscriptions =
            filters.iter().map(|f| Subscription { filter: (*f).to_owned(), qos: 1, options: 0 }).collect();
        let packet_id = self.packet_id();
        self.send(&Packet::Subscribe(Subscribe { packet_id, subscriptions, properties: Properties::default() })).await
    }

    async fn publish(&mut self, topic: &str, payload: String) -> anyhow::Result<()> {
        let packet_id = Some(self.packet_id());
        let publish = Publish::new(topic.to_owned(), 1, packet_id, payload.into_bytes());
        self.send(&Packet::Publish(publish)).await
    }

    fn packet_id(&mut self) -> u16 {
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.next_id
    }

    async fn send(&mut self, packet: &Packet) -> anyhow::Result<()> {
        let mut bytes = Vec::new();
        encode(packet, Version::V5, &mut bytes);
        self.stream.write_all(&bytes).await?;
        Ok(())
    }

    /// The next packet from the server. Cancel-safe: bytes read stay in the buffer.
    async fn next(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some((packet, used)) = decode(&self.input, Some(Version::V5), 1 << 20)? {
                self.input.drain(..used);
                return Ok(packet);
            }
            if self.stream.read_buf(&mut self.input).await? == 0 {
                bail!("the server closed the connection");
            }
        }
    }
}
