//! Devices provisioning themselves over MQTT, as ThingsBoard firmware does: connect with user
//! name `provision`, subscribe to `/provision/response`, publish
//! `{"deviceName", "provisionDeviceKey", "provisionDeviceSecret"}` to `/provision/request`. The
//! key and secret are an enrollment token's id (or name) and secret; the same zero-touch rules
//! as the agent's apply (pre-registered serials, approval). The answer carries the new
//! credential: `{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":…}`.

use std::{net::SocketAddr, time::Duration};

use baton_proto::{
    api::enrollment::EnrollRequest,
    mqtt::{Ack, Packet, Properties, Publish, SubAck, Version, dialect, reason, topic},
};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};

use super::wire::Wire;
use crate::state::AppState;
use baton_core::Error;
use baton_core::enrollment;

/// How long a provisioning connection may stay.
const LIFETIME: Duration = Duration::from_secs(60);

pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(app: &AppState, wire: &mut Wire<S>, peer: SocketAddr) {
    let mut stop = app.shutdown.subscribe();
    tokio::select! {
        _ = tokio::time::timeout(LIFETIME, exchange(app, wire, peer)) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    wire.finish(None).await;
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(app: &AppState, wire: &mut Wire<S>, peer: SocketAddr) {
    let mut subscribed: Option<u8> = None;
    loop {
        let Ok(packet) = wire.read(true).await else { return };
        match packet {
            Packet::Subscribe(s) => {
                let codes = s
                    .subscriptions
                    .iter()
                    .map(|sub| {
                        if topic::valid_filter(&sub.filter) && topic::matches(&sub.filter, dialect::PROVISION_RESPONSE)
                        {
                            subscribed = Some(sub.qos.min(1));
                            sub.qos.min(1)
                        } else {
                            reason::NOT_AUTHORIZED
                        }
                    })
                    .collect();
                wire.queue(&Packet::SubAck(SubAck {
                    packet_id: s.packet_id,
                    codes,
                    properties: Properties::default(),
                }));
            }
            Packet::Publish(p) => {
                let code = if p.topic == dialect::PROVISION_REQUEST {
                    if app.connect_limiter.check(peer.ip()).is_err() {
                        reason::QUOTA_EXCEEDED
                    } else {
                        let answer = answer(app, &p.payload).await;
                        if let Some(qos) = subscribed {
                            let publish = Publish::new(
                                dialect::PROVISION_RESPONSE,
                                qos,
                                (qos > 0).then_some(1),
                                answer.to_string().into_bytes(),
                            );
                            wire.queue(&Packet::Publish(publish));
                        }
                        reason::SUCCESS
                    }
                } else {
                    reason::NOT_AUTHORIZED
                };
                if let Some(id) = p.packet_id {
                    let code = if wire.version == Version::V5 { code } else { 0 };
                    let ack = Ack::new(id, code);
                    wire.queue(&if p.qos == 2 { Packet::PubRec(ack) } else { Packet::PubAck(ack) });
                }
            }
            Packet::PubRel(a) => {
                wire.queue(&Packet::PubComp(Ack::new(a.packet_id, 0)));
            }
            Packet::PingReq => {
                wire.queue(&Packet::PingResp);
            }
            Packet::PubAck(_) | Packet::PubComp(_) | Packet::Unsubscribe(_) => {}
            _ => return,
        }
        if wire.flush().await.is_err() {
            return;
        }
    }
}

/// The answer to one provisioning request.
async fn answer(app: &AppState, payload: &[u8]) -> Value {
    let failure = |why: String| json!({"status": "FAILURE", "errorMsg": why});
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(payload) else {
        return failure("the request must be a JSON object".into());
    };
    let text = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(name), Some(key), Some(secret)) =
        (text("deviceName"), text("provisionDeviceKey"), text("provisionDeviceSecret"))
    else {
        return failure("deviceName, provisionDeviceKey and provisionDeviceSecret are required".into());
    };
    let req = EnrollRequest { token: secret, serial: name, inventory: None, csr: None };
    match enrollment::enroll_keyed(&app.db, &app.bus, req, Some(&key), app.settings.device_certificate_lifetime()).await
    {
        Ok(enrolled) => {
            metrics::counter!("baton_mqtt_provisioned_total").increment(1);
            if text("credentialsType").as_deref() == Some("MQTT_BASIC") {
                json!({"status": "SUCCESS", "credentialsType": "MQTT_BASIC", "credentialsValue":
                    {"clientId": enrolled.device_id, "userName": enrolled.device_id, "password": enrolled.secret},
                    "deviceId": enrolled.device_id})
            } else {
                json!({"status": "SUCCESS", "credentialsType": "ACCESS_TOKEN", "credentialsValue": enrolled.secret,
                    "deviceId": enrolled.device_id})
            }
        }
        Err(Error::Internal(e)) => {
            tracing::error!(error = %e, "MQTT provisioning failed");
            failure("the server failed; retry later".into())
        }
        Err(e) => failure(e.to_string()),
    }
}
