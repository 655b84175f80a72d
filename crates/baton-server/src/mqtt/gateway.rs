//! ThingsBoard's gateway API on a device's connection: the gateway announces sub-devices by
//! name (`v1/gateway/connect` / `disconnect`), reports their telemetry and attributes keyed by
//! name, and relays their RPC (`v1/gateway/rpc`, both ways). Sub-devices are devices in the
//! registry linked to the gateway; they are online while announced and while their gateway is
//! connected, and go offline with it.

use baton_proto::mqtt::{dialect::Inbound, payload};
use serde_json::{Value, json};

use super::session::{Ending, MAX_SUB_DEVICES, Session};
use baton_core::Error;
use baton_core::{
    devices::{presence, relayed},
    events,
};

impl Session {
    /// Handles a publish on a `v1/gateway/…` topic. The inner result is a payload problem.
    pub(super) async fn gateway(&mut self, kind: Inbound<'_>, payload: &[u8]) -> Result<Result<(), String>, Ending> {
        let value = match payload::json(payload) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let device_name = || value.get("device").and_then(Value::as_str).map(str::to_owned);
        match kind {
            Inbound::GatewayConnect => match device_name() {
                Some(name) => Ok(self.sub_named(&name).await?.map(|_| ())),
                None => Ok(Err("`device` (the sub-device's name) is required".into())),
            },
            Inbound::GatewayDisconnect => match device_name() {
                Some(name) => {
                    if let Some(id) = self.sub_id(&name) {
                        self.sub_disconnected(&id).await;
                    }
                    Ok(Ok(()))
                }
                None => Ok(Err("`device` (the sub-device's name) is required".into())),
            },
            Inbound::GatewayTelemetry | Inbound::GatewayAttributes => {
                let Value::Object(per_device) = value else {
                    return Ok(Err("the payload must be an object keyed by sub-device name".into()));
                };
                let mut problems = Vec::new();
                for (name, data) in per_device {
                    let id = match self.sub_named(&name).await? {
                        Ok(id) => id,
                        Err(e) => {
                            problems.push(format!("{name}: {e}"));
                            continue;
                        }
                    };
                    let outcome = if kind == Inbound::GatewayTelemetry {
                        self.add_telemetry(&id, &data)
                    } else {
                        match data {
                            Value::Object(map) => self.report_attributes(&id, &map).await?,
                            _ => Err("attributes must be an object".into()),
                        }
                    };
                    if let Err(e) = outcome {
                        problems.push(format!("{name}: {e}"));
                    }
                }
                Ok(if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) })
            }
            Inbound::GatewayRpc => {
                let n = value.get("id").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok());
                let sub = device_name().and_then(|name| self.sub_id(&name));
                let found = match n {
                    Some(n) => self.rpc_command(n, sub.as_deref()).await?,
                    None => None,
                };
                let Some((device_id, command_id)) = found else {
                    return Ok(Err("no RPC request with that `id` is waiting for an answer".into()));
                };
                let answer = value.get("data").cloned().unwrap_or(Value::Null);
                self.answer_rpc(&device_id, &command_id, answer).await?;
                Ok(Ok(()))
            }
            _ => Ok(Err("not a gateway topic".into())),
        }
    }

    /// The id of the relayed sub-device named `name`, if this connection announced it.
    fn sub_id(&self, name: &str) -> Option<String> {
        self.extra.as_ref().and_then(|e| e.sub_by_name.get(name).cloned())
    }

    /// The id of the sub-device `name`, announcing it first if needed.
    async fn sub_named(&mut self, name: &str) -> Result<Result<String, String>, Ending> {
        if let Some(id) = self.sub_id(name) {
            return Ok(Ok(id));
        }
        if self.extra.as_ref().is_some_and(|e| e.subs.len() >= MAX_SUB_DEVICES) {
            return Ok(Err(format!("a gateway connection relays at most {MAX_SUB_DEVICES} devices")));
        }
        let (db, scope) = (&self.app.db, &self.device.scope);
        match relayed::announce(db, scope, &self.device.device_id, name).await {
            Ok(sub) => Ok(Ok(self.sub_connected(sub).await?)),
            Err(Error::Invalid { detail, .. }) => Ok(Err(detail)),
            Err(Error::Conflict(m) | Error::Forbidden(m)) => Ok(Err(m)),
            Err(e) => {
                tracing::error!(error = %e, "could not announce a sub-device");
                Err(Ending::server(baton_proto::mqtt::reason::UNSPECIFIED, "the server failed; reconnect later"))
            }
        }
    }

    /// Marks a sub-device online behind this connection. Returns its id.
    pub(super) async fn sub_connected(&mut self, sub: relayed::SubDevice) -> Result<String, Ending> {
        let (db, bus, scope) = (&self.app.db, &self.app.bus, &self.device.scope);
        if let Err(e) = presence::online(db, scope, &sub.id, &self.remote, "mqtt").await {
            tracing::error!(error = %e, "could not record a sub-device online");
            return Err(Ending::server(baton_proto::mqtt::reason::UNSPECIFIED, "the server failed; reconnect later"));
        }
        let extra = self.extra.get_or_insert_default();
        let relay_tx = extra.relay.get_or_insert_with(|| tokio::sync::mpsc::channel(1024)).0.clone();
        self.app.connections.register_relayed(&sub.id, self.connection, relay_tx);
        let data = json!({"transport": "mqtt", "gateway_id": self.device.device_id});
        events::record(db, bus, scope, Some(&sub.id), events::kind::ONLINE, data).await;
        let id = sub.id.clone();
        let extra = self.extra();
        extra.sub_by_name.insert(sub.name.clone(), id.clone());
        extra.subs.insert(id.clone(), sub);
        self.to_deliver.insert(id.clone());
        Ok(id)
    }

    /// The gateway said a sub-device went away.
    async fn sub_disconnected(&mut self, id: &str) {
        self.forget_sub(id);
        self.app.connections.unregister(id, self.connection);
        let (db, bus, scope) = (&self.app.db, &self.app.bus, &self.device.scope);
        if let Err(e) = presence::disconnected(db, scope, id).await {
            tracing::warn!(error = %e, device_id = id, "could not record a sub-device offline");
        }
        let data = json!({"transport": "mqtt", "gateway_id": self.device.device_id, "clean": true});
        events::record(db, bus, scope, Some(id), events::kind::OFFLINE, data).await;
    }

    /// Stops relaying a sub-device (it was decommissioned, or is relayed elsewhere now).
    pub(super) fn forget_sub(&mut self, id: &str) {
        if let Some(extra) = self.extra.as_deref_mut() {
            if let Some(sub) = extra.subs.remove(id) {
                extra.sub_by_name.remove(&sub.name);
            }
            extra.desired_seen.remove(id);
        }
    }

    /// The gateway's connection ended: its sub-devices go offline with it (except those another
    /// connection relays by now, such as the gateway's own new connection).
    pub(super) async fn end_relays(&mut self) {
        if !self.relays_any() {
            return;
        }
        self.app.connections.unregister_relayed(self.connection);
        let relayed = self.extra.as_ref().map(|e| e.subs.keys()).into_iter().flatten();
        let gone: Vec<String> = relayed.filter(|id| !self.app.connections.is_connected(id)).cloned().collect();
        let (db, bus, scope) = (&self.app.db, &self.app.bus, &self.device.scope);
        match presence::offline_many(db, scope, &gone).await {
            Ok(()) => {
                for id in &gone {
                    let data = json!({"transport": "mqtt", "gateway_id": self.device.device_id, "clean": false,
                        "reason": "the gateway disconnected"});
                    events::record(db, bus, scope, Some(id), events::kind::OFFLINE, data).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not record sub-devices offline"),
        }
        if let Some(extra) = self.extra.as_deref_mut() {
            extra.subs.clear();
            extra.sub_by_name.clear();
        }
    }
}
