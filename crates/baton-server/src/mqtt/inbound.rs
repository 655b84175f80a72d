//! What a device's publishes do: telemetry (gathered, stored, then acknowledged), attributes,
//! inventory and status, command results and RPC answers, ThingsBoard's attribute requests — each
//! checked against the device's namespace, its message rate and the payload's shape. A message
//! that cannot be used is dropped with its reason code, a metric and (now and then) an event.

use baton_proto::{
    agent::{CommandProgress, CommandUpdate},
    inventory::Inventory,
    mqtt::{
        Ack, Packet, Publish, Version,
        dialect::{self, Inbound, Target},
        payload, reason,
    },
};
use serde_json::{Map, Value, json};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Instant,
};

use super::{
    session::{Ending, REJECT_EVENT_EVERY, Session},
    wire::Wire,
};
use baton_core::Error;
use baton_core::{attributes, devices::presence, events, store::now_ms, telemetry};

impl Session {
    pub(super) async fn on_publish<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
        p: Publish,
    ) -> Result<(), Ending> {
        metrics::counter!("baton_mqtt_messages_received_total").increment(1);
        if p.properties.topic_alias().is_some() {
            return Err(Ending::server(reason::TOPIC_ALIAS_INVALID, "topic aliases are not supported"));
        }
        let id = p.packet_id.unwrap_or_default();
        let code = if p.qos == 2 && self.extra.as_ref().is_some_and(|e| e.qos2.contains(&id)) {
            // A resent QoS 2 message that was handled already.
            reason::SUCCESS
        } else if !self.take_token() {
            self.reject(&p.topic, reason::QUOTA_EXCEEDED, "over the device's message rate").await
        } else {
            self.route(wire, &p).await?
        };
        let code = if self.version == Version::V5 { code } else { reason::SUCCESS };
        match p.qos {
            1 => {
                wire.queue(&Packet::PubAck(Ack::new(id, code)));
            }
            2 => {
                if code < 0x80 {
                    self.extra().qos2.insert(id);
                }
                wire.queue(&Packet::PubRec(Ack::new(id, code)));
            }
            _ => {}
        }
        Ok(())
    }

    /// Does what a publish means; returns its reason code.
    async fn route<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
        p: &Publish,
    ) -> Result<u8, Ending> {
        let Some(inbound) = dialect::inbound(&p.topic) else {
            return Ok(self
                .reject(&p.topic, reason::NOT_AUTHORIZED, "the topic is outside the device's namespace")
                .await);
        };
        let target = match inbound {
            Inbound::Telemetry(t)
            | Inbound::Attributes(t)
            | Inbound::Inventory(t)
            | Inbound::Status(t)
            | Inbound::CommandResult(t, _)
            | Inbound::DeploymentState(t, _) => match self.resolve(t).await? {
                Some(device_id) => device_id,
                None => {
                    let why = "the topic names a device this connection does not speak for";
                    return Ok(self.reject(&p.topic, reason::NOT_AUTHORIZED, why).await);
                }
            },
            _ => self.device.device_id.clone(),
        };
        let outcome: Result<(), String> = match inbound {
            Inbound::Telemetry(_) => match payload::json(&p.payload) {
                Ok(value) => {
                    if target == self.device.device_id {
                        self.firmware_state(&value).await?;
                    }
                    self.add_telemetry(&target, &value)
                }
                Err(e) => Err(e),
            },
            Inbound::DeploymentState(_, execution) if target == self.device.device_id => {
                self.deployment_state(execution, &p.payload).await?
            }
            Inbound::DeploymentState(..) => Err("sub-devices get no updates yet".into()),
            Inbound::FirmwareChunk(request, chunk) => self.firmware_chunk(wire, request, chunk, &p.payload).await?,
            Inbound::Attributes(_) => match payload::object(&p.payload) {
                Ok(map) => self.report_attributes(&target, &map).await?,
                Err(e) => Err(e),
            },
            Inbound::Status(_) => {
                let status = String::from_utf8_lossy(&p.payload).chars().take(256).collect::<String>();
                let map = Map::from_iter([("status".to_owned(), Value::String(status))]);
                self.report_attributes(&target, &map).await?
            }
            Inbound::Inventory(_) => match serde_json::from_slice::<Inventory>(&p.payload) {
                Ok(inventory) => self.store_inventory(&target, &inventory).await?,
                Err(e) => Err(format!("not an inventory: {e}")),
            },
            Inbound::CommandResult(_, command_id) => match payload::command_result(&p.payload) {
                Ok((state, result)) => {
                    let state = match state.as_str() {
                        "acked" => CommandProgress::Acked,
                        "failed" => CommandProgress::Failed,
                        _ => CommandProgress::Succeeded,
                    };
                    let update = CommandUpdate { command_id: command_id.to_owned(), state, result };
                    self.report(&target, update).await?;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Inbound::RpcResponse(n) => {
                let found = match n.parse::<u32>() {
                    Ok(number) => self.rpc_command(number, Some(&self.device.device_id)).await?,
                    Err(_) => None,
                };
                match found {
                    Some((device_id, command_id)) => {
                        let value = payload::json(&p.payload)
                            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&p.payload).into_owned()));
                        self.answer_rpc(&device_id, &command_id, value).await?;
                        Ok(())
                    }
                    None => Err(format!("no RPC request {n} is waiting for an answer")),
                }
            }
            Inbound::RpcRequest(n) => {
                let answer = json!({"error": "client-side RPC is not supported by this server"});
                self.publish_if_subscribed(wire, &[format!("v1/devices/me/rpc/response/{n}")], answer.to_string());
                Ok(())
            }
            Inbound::AttributesRequest(n) => match payload::object(&p.payload) {
                Ok(request) => {
                    let answer = self.attributes_answer(&request).await?;
                    let topic = format!("v1/devices/me/attributes/response/{n}");
                    self.publish_if_subscribed(wire, &[topic], answer.to_string());
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Inbound::GatewayConnect
            | Inbound::GatewayDisconnect
            | Inbound::GatewayTelemetry
            | Inbound::GatewayAttributes
            | Inbound::GatewayRpc => self.gateway(inbound, &p.payload).await?,
        };
        Ok(match outcome {
            Ok(()) => reason::SUCCESS,
            Err(why) => self.reject(&p.topic, reason::PAYLOAD_FORMAT_INVALID, &why).await,
        })
    }

    /// The device a topic's target names, if this connection speaks for it.
    async fn resolve(&mut self, target: Target<'_>) -> Result<Option<String>, Ending> {
        let own = &self.device.device_id;
        Ok(match target {
            Target::Me => Some(own.clone()),
            Target::Id(id) if id == own || self.relays(id) => Some(id.to_owned()),
            Target::Id(id) => {
                let found = baton_core::devices::relayed::relayed_by(&self.app.db, &self.device.scope, own, id)
                    .await
                    .map_err(Ending::internal)?;
                match found {
                    Some(sub) => Some(self.sub_connected(sub).await?),
                    None => None,
                }
            }
        })
    }

    /// Adds parsed telemetry to the batch stored before the next acknowledgement.
    pub(super) fn add_telemetry(&mut self, device_id: &str, value: &Value) -> Result<(), String> {
        let now = now_ms().max(self.stamped + 1);
        let (mut samples, skipped) = payload::telemetry(value, now)?;
        if samples.iter().any(|s| s.ts == now) {
            self.stamped = now;
        }
        let dropped = telemetry::sanitize(&mut samples)? + skipped;
        if dropped > 0 {
            metrics::counter!("baton_telemetry_values_dropped_total").increment(dropped as u64);
        }
        if samples.is_empty() {
            return Ok(());
        }
        match self.batch.iter_mut().find(|(d, _)| d == device_id) {
            Some((_, existing)) if existing.len() + samples.len() <= telemetry::MAX_SAMPLES => existing.extend(samples),
            _ => self.batch.push((device_id.to_owned(), samples)),
        }
        Ok(())
    }

    /// Stores the gathered telemetry; nothing is acknowledged before this returns.
    pub(super) async fn store_batch(&mut self) -> Result<(), Ending> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let writer = &self.app.telemetry;
        let scope = &self.device.scope;
        let stored = futures::future::join_all(
            batch.into_iter().map(|(id, samples)| async move { writer.store(scope, &id, None, samples).await }),
        )
        .await;
        for result in stored {
            result.map_err(Ending::internal)?;
        }
        Ok(())
    }

    pub(super) async fn report_attributes(
        &mut self,
        device_id: &str,
        map: &Map<String, Value>,
    ) -> Result<Result<(), String>, Ending> {
        match attributes::merge_reported(&self.app.db, &self.device.scope, device_id, map).await {
            Ok(()) => Ok(Ok(())),
            Err(Error::Invalid { detail, .. }) => Ok(Err(detail)),
            Err(e) => Err(Ending::internal(e)),
        }
    }

    async fn store_inventory(&mut self, device_id: &str, inventory: &Inventory) -> Result<Result<(), String>, Ending> {
        let mut tx = self.app.db.writer().begin().await.map_err(Ending::internal)?;
        let changed = match presence::store_inventory(&mut tx, device_id, inventory).await {
            Ok(changed) => changed,
            Err(Error::Invalid { detail, .. }) => return Ok(Err(detail)),
            Err(e) => return Err(Ending::internal(e)),
        };
        tx.commit().await.map_err(Ending::internal)?;
        if changed {
            let (db, bus, scope) = (&self.app.db, &self.app.bus, &self.device.scope);
            events::record(db, bus, scope, Some(device_id), events::kind::INVENTORY, json!({})).await;
        }
        Ok(Ok(()))
    }

    /// Applies a device's report about a command; a finished one frees room for the next.
    pub(super) async fn report(&mut self, device_id: &str, update: CommandUpdate) -> Result<(), Ending> {
        let command_id = update.command_id.clone();
        let (db, bus, scope) = (&self.app.db, &self.app.bus, &self.device.scope);
        let finished = self.app.commands.report(scope, device_id, update).await.map_err(Ending::internal)?;
        if let Some(finished) = finished {
            if finished.support_bundle {
                baton_core::bundles::settle(db, bus, Some(&command_id)).await.map_err(Ending::internal)?;
            }
            self.sent.remove(&command_id);
            if let Some(extra) = self.extra.as_deref_mut()
                && let Some(n) = extra.rpc_of_command.remove(&command_id)
            {
                extra.rpc.remove(&n);
            }
            self.to_deliver.insert(device_id.to_owned());
        }
        Ok(())
    }

    /// A ThingsBoard RPC answer completes its command.
    pub(super) async fn answer_rpc(&mut self, device_id: &str, command_id: &str, value: Value) -> Result<(), Ending> {
        let (ok, result) = payload::rpc_answer(value);
        let state = if ok { CommandProgress::Succeeded } else { CommandProgress::Failed };
        self.report(device_id, CommandUpdate { command_id: command_id.to_owned(), state, result: Some(result) }).await
    }

    /// ThingsBoard's attribute request: `{"clientKeys":"a,b","sharedKeys":"c"}` →
    /// `{"client":{…},"shared":{…}}` (no keys named: all of them).
    async fn attributes_answer(&self, request: &Map<String, Value>) -> Result<Value, Ending> {
        let stored = attributes::get(&self.app.db, &self.device.scope, &self.device.device_id)
            .await
            .map_err(Ending::internal)?;
        let keys =
            |k: &str| request.get(k).and_then(Value::as_str).map(|s| s.split(',').map(str::trim).collect::<Vec<_>>());
        let pick = |map: &Map<String, Value>, wanted: Option<Vec<&str>>| -> Map<String, Value> {
            map.iter()
                .filter(|(k, _)| wanted.as_ref().is_none_or(|w| w.contains(&k.as_str())))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let (client, shared) = (keys("clientKeys"), keys("sharedKeys"));
        let none = client.is_none() && shared.is_none();
        let mut answer = Map::new();
        if none || client.is_some() {
            answer.insert("client".into(), Value::Object(pick(&stored.reported, client)));
        }
        if none || shared.is_some() {
            answer.insert("shared".into(), Value::Object(pick(&stored.desired, shared)));
        }
        Ok(Value::Object(answer))
    }

    /// Counts a message against the rate; false when over it.
    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let rate = f64::from(self.app.settings.mqtt_messages_per_second);
        let burst = f64::from(self.app.settings.mqtt_message_burst);
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops a message: a metric always, an event at most every few seconds. Returns `code`.
    pub(super) async fn reject(&mut self, topic: &str, code: u8, why: &str) -> u8 {
        let label = match code {
            reason::NOT_AUTHORIZED => "not_authorized",
            reason::QUOTA_EXCEEDED => "rate",
            _ => "payload",
        };
        metrics::counter!("baton_mqtt_messages_rejected_total", "reason" => label).increment(1);
        tracing::debug!(device_id = %self.device.device_id, topic, why, "MQTT message rejected");
        self.rejected_since += 1;
        if self.rejected_at.is_none_or(|at| at.elapsed() >= REJECT_EVENT_EVERY) {
            self.rejected_at = Some(Instant::now());
            let topic: String = topic.chars().take(256).collect();
            let data = json!({"topic": topic, "reason": why, "reason_code": code, "rejected": self.rejected_since});
            self.rejected_since = 0;
            let (db, bus, scope) = (&self.app.db, &self.app.bus, &self.device.scope);
            events::record(db, bus, scope, Some(&self.device.device_id), events::kind::MESSAGE_REJECTED, data).await;
        }
        code
    }
}
