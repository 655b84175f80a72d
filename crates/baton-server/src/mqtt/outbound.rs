//! Commands and desired attributes going out to a device, in the dialect it subscribed with:
//! Baton's (`baton/v1/{id}/commands/{command id}`, `baton/v1/{id}/config`), ThingsBoard's
//! (`v1/devices/me/rpc/request/{n}`, `v1/devices/me/attributes`), or, for a sub-device, its
//! gateway's (`v1/gateway/rpc`, `v1/gateway/attributes`). Commands come from the durable outbox
//! and go out with QoS 1 (at most the device's subscription QoS); a device that is not subscribed
//! to a command topic gets none, and they wait for it.

use baton_proto::{
    api::commands::CommandSpec,
    mqtt::{Packet, Publish, dialect},
};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    session::{Ending, Outgoing, Session},
    wire::Wire,
};
use baton_core::{attributes, commands::delivery};

impl Session {
    /// Looks at every device marked for delivery: desired attributes, then waiting commands.
    pub(super) async fn deliver_pending<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
    ) -> Result<(), Ending> {
        if self.to_deliver.is_empty() {
            return Ok(());
        }
        // Taken, not drained: an idle connection keeps no table for the next pass.
        let ids: Vec<String> = std::mem::take(&mut self.to_deliver).into_iter().collect();
        for id in ids {
            if id != self.device.device_id && !self.relays(&id) {
                continue;
            }
            self.push_desired(wire, &id).await?;
            if self.in_flight.len() < self.window {
                self.deliver_commands(wire, &id).await?;
                self.deliver_deployments(wire, &id).await?;
            } else {
                self.blocked.insert(id);
            }
        }
        Ok(())
    }

    async fn deliver_commands<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
        device_id: &str,
    ) -> Result<(), Ending> {
        let is_me = device_id == self.device.device_id;
        let name = if is_me { None } else { self.sub_name(device_id) };
        let probe = dialect::native(device_id, is_me, "commands/probe");
        let native = probe.iter().any(|t| self.subscribed(t).is_some());
        let rpc_topic = if is_me { "v1/devices/me/rpc/request/1" } else { "v1/gateway/rpc" };
        if !native && self.subscribed(rpc_topic).is_none() {
            return Ok(());
        }
        let pending = delivery::pending(&self.app.db, &self.device.scope, device_id).await.map_err(internal)?;
        for envelope in pending {
            if self.sent.contains(&envelope.id) {
                continue;
            }
            if matches!(envelope.command, CommandSpec::SupportBundle { .. }) {
                let error = "MQTT devices cannot make support bundles; they need the Baton agent";
                self.answer_rpc(device_id, &envelope.id, json!({"error": error})).await?;
                continue;
            }
            if self.in_flight.len() >= self.window {
                self.blocked.insert(device_id.to_owned());
                break;
            }
            let (topic, payload) = if native {
                let topics = dialect::native(device_id, is_me, &format!("commands/{}", envelope.id));
                let Some(topic) = topics.into_iter().find(|t| self.subscribed(t).is_some()) else { continue };
                (topic, serde_json::to_string(&envelope).map_err(|e| internal(anyhow::Error::from(e)))?)
            } else {
                let n = self.rpc_number(device_id, &envelope.id);
                let (method, params) = rpc_call(&envelope.command);
                match &name {
                    None => (
                        format!("v1/devices/me/rpc/request/{n}"),
                        json!({"method": method, "params": params}).to_string(),
                    ),
                    Some(name) => (
                        "v1/gateway/rpc".to_owned(),
                        json!({"device": name, "data": {"id": n, "method": method, "params": params}}).to_string(),
                    ),
                }
            };
            let qos = self.subscribed(&topic).unwrap_or(0).min(1);
            let packet_id = (qos > 0).then(|| self.next_packet_id());
            if let Some(id) = packet_id {
                let outgoing = Outgoing::Command { device_id: device_id.to_owned(), command_id: envelope.id.clone() };
                self.in_flight.insert(id, outgoing);
            }
            self.sent.insert(envelope.id.clone());
            let publish = Publish::new(topic, qos, packet_id, payload.into_bytes());
            if !wire.queue(&Packet::Publish(publish)) {
                if let Some(id) = packet_id {
                    self.in_flight.remove(&id);
                }
                let error = "the command is larger than the device accepts (its Maximum Packet Size)";
                self.answer_rpc(device_id, &envelope.id, json!({"error": error})).await?;
            }
        }
        Ok(())
    }

    /// The ThingsBoard request number of a command. It is derived from the command's id, so it
    /// is the same on every connection: a device may answer on another connection than the one
    /// the request came on (as `mosquitto_sub` and `mosquitto_pub` do), or after a reconnect.
    fn rpc_number(&mut self, device_id: &str, command_id: &str) -> u32 {
        let n = rpc_number(command_id);
        let extra = self.extra();
        extra.rpc.insert(n, (device_id.to_owned(), command_id.to_owned()));
        extra.rpc_of_command.insert(command_id.to_owned(), n);
        n
    }

    /// The device and command RPC request `n` stands for: one sent on this connection, or a
    /// delivered, unanswered command of `device_id` sent on an earlier connection.
    pub(super) async fn rpc_command(
        &self,
        n: u32,
        device_id: Option<&str>,
    ) -> Result<Option<(String, String)>, Ending> {
        if let Some(found) = self.extra.as_ref().and_then(|e| e.rpc.get(&n)) {
            return Ok(Some(found.clone()));
        }
        let Some(device_id) = device_id else { return Ok(None) };
        let delivered = delivery::delivered(&self.app.db, &self.device.scope, device_id).await.map_err(internal)?;
        Ok(delivered.into_iter().find(|id| rpc_number(id) == n).map(|id| (device_id.to_owned(), id)))
    }

    /// Sends desired attributes that changed since last sent: the whole document on Baton's
    /// `config` topic, the changed keys (and `{"deleted": […]}`) in ThingsBoard's dialect.
    async fn push_desired<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
        device_id: &str,
    ) -> Result<(), Ending> {
        let is_me = device_id == self.device.device_id;
        let native = dialect::native(device_id, is_me, "config");
        let shared = if is_me { "v1/devices/me/attributes" } else { "v1/gateway/attributes" };
        let native_subscribed = native.iter().any(|t| self.subscribed(t).is_some());
        let shared_subscribed = self.subscribed(shared).is_some();
        if !native_subscribed && !shared_subscribed {
            return Ok(());
        }
        let current = match attributes::get(&self.app.db, &self.device.scope, device_id).await {
            Ok(a) => a.desired,
            Err(baton_core::Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(internal(e)),
        };
        let seen = self.desired_seen(device_id);
        if seen.is_some_and(|seen| *seen == current) {
            return Ok(());
        }
        let seen = seen.cloned().unwrap_or_default();
        if native_subscribed {
            self.publish_if_subscribed(wire, &native, Value::Object(current.clone()).to_string());
        }
        if shared_subscribed {
            let changed: Map<String, Value> =
                current.iter().filter(|(k, v)| seen.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
            let deleted: Vec<&String> = seen.keys().filter(|k| !current.contains_key(*k)).collect();
            let topics = [shared.to_owned()];
            let name = self.sub_name(device_id);
            let wrap = |data: Value| match &name {
                Some(name) => json!({"device": name, "data": data}),
                None => data,
            };
            if !changed.is_empty() {
                self.publish_if_subscribed(wire, &topics, wrap(Value::Object(changed)).to_string());
            }
            if !deleted.is_empty() {
                self.publish_if_subscribed(wire, &topics, wrap(json!({"deleted": deleted})).to_string());
            }
        }
        if is_me {
            self.desired_own = Some(current);
        } else {
            self.extra().desired_seen.insert(device_id.to_owned(), current);
        }
        Ok(())
    }

    /// Desired attributes as last pushed (or found at connect) to `device_id`.
    fn desired_seen(&self, device_id: &str) -> Option<&Map<String, Value>> {
        if device_id == self.device.device_id {
            self.desired_own.as_ref()
        } else {
            self.extra.as_ref().and_then(|e| e.desired_seen.get(device_id))
        }
    }
}

/// A command id as a ThingsBoard request number (FNV-1a): 31 bits, as firmware often keeps it in
/// a signed 32-bit integer, and never 0.
fn rpc_number(command_id: &str) -> u32 {
    let hash = command_id.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    (hash & 0x7FFF_FFFF).max(1)
}

/// A command as a ThingsBoard RPC call: a custom command is its name and parameters; the
/// built-in ones are their type and their other fields.
fn rpc_call(spec: &CommandSpec) -> (String, Value) {
    match spec {
        CommandSpec::Custom { name, params } => (name.clone(), params.clone()),
        other => {
            let mut value = serde_json::to_value(other).unwrap_or_default();
            let method = value.get("type").and_then(Value::as_str).unwrap_or("command").to_owned();
            if let Some(object) = value.as_object_mut() {
                object.remove("type");
            }
            (method, value)
        }
    }
}

pub(super) fn internal(e: impl Into<crate::Error>) -> Ending {
    let e = e.into();
    tracing::error!(error = %e, "MQTT delivery failed");
    Ending::server(baton_proto::mqtt::reason::UNSPECIFIED, "the server failed; reconnect later")
}
