//! Updates for devices on MQTT, in the dialect they subscribed with:
//! - **Baton's**: the deployment (artifact facts, download URL, signed claims) is published on
//!   `baton/v1/{id}/deployments/{execution}`; the device reports on
//!   `…/deployments/{execution}/state` with `{"attempt", "state", "installed_version", …}` (an
//!   execution report) and downloads the bytes over HTTPS with its id and secret.
//! - **ThingsBoard's firmware flow**: the shared attributes `fw_title`, `fw_version`,
//!   `fw_checksum` (SHA-256), `fw_checksum_algorithm`, `fw_size` (and `fw_url`) are pushed on
//!   `v1/devices/me/attributes`; the device fetches the image in chunks over MQTT
//!   (`v2/fw/request/{req}/chunk/{n}` → `v2/fw/response/{req}/chunk/{n}`) and reports telemetry
//!   `fw_state` DOWNLOADING → DOWNLOADED → VERIFIED → UPDATING → UPDATED | FAILED, with
//!   `current_fw_version` and `fw_error`, which become the execution's states.
//!
//! Sub-devices behind a gateway get no updates yet.

use baton_proto::{
    api::rollouts::{ExecutionState, FailureClass},
    deployment::ExecutionReport,
    mqtt::{Packet, Publish},
};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    session::{Ending, Outgoing, Session},
    wire::Wire,
};
use baton_core::rollouts::delivery;

/// Largest firmware chunk a device may ask for.
const MAX_CHUNK: u64 = 64 * 1024;

impl Session {
    /// Sends the device's deployments it has not been sent on this connection.
    pub(super) async fn deliver_deployments<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
        device_id: &str,
    ) -> Result<(), Ending> {
        if device_id != self.device.device_id {
            return Ok(());
        }
        let native = baton_proto::mqtt::dialect::native(device_id, true, "deployments/probe");
        let native = native.iter().any(|t| self.subscribed(t).is_some());
        let thingsboard = self.subscribed("v1/devices/me/attributes").is_some();
        if !native && !thingsboard {
            return Ok(());
        }
        let pending = delivery::pending(&self.app.db, &self.app.rollouts, &self.device.scope, device_id)
            .await
            .map_err(internal)?;
        let base = self.app.settings.public_url.clone().unwrap_or_default();
        for mut d in pending {
            let key = format!("deployment:{}:{}:{}", d.execution_id, d.attempt, d.install_now);
            if self.sent.contains(&key) {
                continue;
            }
            if d.artifact.url.starts_with('/') {
                d.artifact.url = format!("{}{}", base.trim_end_matches('/'), d.artifact.url);
            }
            let (topics, payload) = if native {
                let topics =
                    baton_proto::mqtt::dialect::native(device_id, true, &format!("deployments/{}", d.execution_id));
                (topics, serde_json::to_string(&d).map_err(|e| internal(anyhow::Error::from(e)))?)
            } else {
                let a = &d.artifact;
                let attributes = json!({
                    "fw_title": a.name,
                    "fw_version": a.version,
                    "fw_checksum": a.sha256,
                    "fw_checksum_algorithm": "SHA256",
                    "fw_size": a.size,
                    "fw_url": a.url,
                });
                (vec!["v1/devices/me/attributes".to_owned()], attributes.to_string())
            };
            if self.publish_if_subscribed(wire, &topics, payload) {
                self.sent.insert(key);
            }
        }
        Ok(())
    }

    /// A state report on Baton's topic.
    pub(super) async fn deployment_state(
        &mut self,
        execution_id: &str,
        payload: &[u8],
    ) -> Result<Result<(), String>, Ending> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct State {
            attempt: u32,
            state: ExecutionState,
            #[serde(default)]
            failure_class: Option<FailureClass>,
            #[serde(default)]
            detail: Option<String>,
            #[serde(default)]
            installed_version: Option<String>,
            #[serde(default)]
            bytes_per_sec: Option<u64>,
        }
        let s: State = match serde_json::from_slice(payload) {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("not a deployment state: {e}"))),
        };
        let report = ExecutionReport {
            execution_id: execution_id.to_owned(),
            attempt: s.attempt,
            state: s.state,
            failure_class: s.failure_class,
            detail: s.detail,
            installed_version: s.installed_version,
            bytes_per_sec: s.bytes_per_sec,
        };
        self.apply_report(report).await?;
        Ok(Ok(()))
    }

    /// ThingsBoard's `fw_state` telemetry, if the values carry one: the device's execution moves.
    pub(super) async fn firmware_state(&mut self, values: &Value) -> Result<(), Ending> {
        let Some(map) = firmware_values(values) else { return Ok(()) };
        let Some(fw_state) = map.get("fw_state").and_then(Value::as_str) else { return Ok(()) };
        let (state, class) = match fw_state {
            "DOWNLOADING" => (ExecutionState::Downloading, None),
            "DOWNLOADED" | "VERIFIED" => (ExecutionState::Downloaded, None),
            "UPDATING" => (ExecutionState::Installing, None),
            "UPDATED" => (ExecutionState::Succeeded, None),
            "FAILED" => (ExecutionState::Failed, Some(FailureClass::Install)),
            _ => return Ok(()),
        };
        let found =
            delivery::in_flight(&self.app.db, &self.device.scope, &self.device.device_id).await.map_err(internal)?;
        let Some((execution_id, attempt, _)) = found else { return Ok(()) };
        let version = map.get("current_fw_version").and_then(Value::as_str).map(str::to_owned);
        let report = ExecutionReport {
            execution_id,
            attempt,
            state,
            failure_class: class,
            detail: map.get("fw_error").and_then(Value::as_str).map(str::to_owned),
            installed_version: version,
            bytes_per_sec: None,
        };
        self.apply_report(report).await
    }

    /// ThingsBoard's firmware chunk request: bytes `n × size ..` of the device's update.
    pub(super) async fn firmware_chunk<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
        request: &str,
        chunk: &str,
        payload: &[u8],
    ) -> Result<Result<(), String>, Ending> {
        let Ok(n) = chunk.parse::<u64>() else { return Ok(Err(format!("`{chunk}` is not a chunk number"))) };
        let size = std::str::from_utf8(payload).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(MAX_CHUNK);
        let size = size.clamp(1, MAX_CHUNK);
        let found =
            delivery::in_flight(&self.app.db, &self.device.scope, &self.device.device_id).await.map_err(internal)?;
        let Some((_, _, located)) = found else {
            return Ok(Err("no firmware update is waiting for this device".into()));
        };
        let total = located.artifact.size;
        let start = n.saturating_mul(size).min(total);
        let len = size.min(total - start);
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        if len > 0 {
            let mut stream = match baton_core::artifacts::read(self.app.artifacts.as_ref(), &located, start, len).await
            {
                Ok(stream) => stream,
                Err(baton_core::Error::Conflict(why)) => return Ok(Err(why)),
                Err(e) => return Err(internal(e)),
            };
            while let Some(piece) = stream.next().await {
                bytes.extend_from_slice(&piece.map_err(|e| internal(anyhow::anyhow!("artifact store: {e}")))?);
            }
        }
        let topic = format!("v2/fw/response/{request}/chunk/{n}");
        let Some(qos) = self.subscribed(&topic) else {
            return Ok(Err(format!("subscribe to {topic} (or v2/fw/response/+/chunk/+) first")));
        };
        let qos = qos.min(1);
        let packet_id = (qos > 0).then(|| self.next_packet_id());
        if let Some(id) = packet_id {
            self.in_flight.insert(id, Outgoing::Other);
        }
        wire.queue(&Packet::Publish(Publish::new(topic, qos, packet_id, bytes)));
        Ok(Ok(()))
    }

    async fn apply_report(&mut self, report: ExecutionReport) -> Result<(), Ending> {
        let app = &self.app;
        delivery::report(&app.db, &app.bus, &app.rollouts, &self.device.scope, &self.device.device_id, report)
            .await
            .map_err(internal)?;
        Ok(())
    }
}

/// The key-values of a ThingsBoard telemetry payload (plain, `{ts, values}`, or the first of a list).
fn firmware_values(value: &Value) -> Option<&Map<String, Value>> {
    match value {
        Value::Array(items) => items.iter().find_map(firmware_values),
        Value::Object(map) => match map.get("values") {
            Some(Value::Object(values)) => Some(values),
            _ => Some(map),
        },
        _ => None,
    }
}

use super::outbound::internal;
