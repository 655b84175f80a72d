//! The demo's devices without the agent: three cold-room sensors on Baton's MQTT topics and a
//! gateway in ThingsBoard's dialect with three sensors behind it. Their credentials are issued
//! again at every start (secrets are never stored in the clear, so the demo cannot reuse them).

use std::{collections::BTreeMap, net::SocketAddr};

use baton_client::Client;
use baton_proto::api::devices::{DeviceCreate, DeviceQuery};
use tokio::sync::watch;

use crate::sim::mqtt::{self, Role};

/// Serials of the sensors; the gateway's; and the names of the sensors behind the gateway.
const SENSORS: [(&str, &str); 3] =
    [("demo-mqtt-1", "Cold room 1"), ("demo-mqtt-2", "Cold room 2"), ("demo-mqtt-3", "Cold room 3")];
const GATEWAY: (&str, &str) = ("demo-gateway", "Warehouse gateway");
const BEHIND_GATEWAY: [&str; 3] = ["demo-gw-freezer-1", "demo-gw-freezer-2", "demo-gw-dock-door"];

/// Starts the MQTT devices; they run until `stop` turns true. Returns how many connect directly
/// (a device an operator decommissioned is skipped, with a line saying so).
pub async fn start(client: &Client, mut addr: SocketAddr, stop: watch::Receiver<bool>) -> usize {
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    let mut started = 0;
    let gateway = (GATEWAY.0, GATEWAY.1, true);
    for (serial, name, is_gateway) in SENSORS.iter().map(|(s, n)| (*s, *n, false)).chain([gateway]) {
        let credential = async {
            let device_id = ensure(client, serial, name).await?;
            let secret = client.issue_device_credential(&device_id).await?.secret;
            anyhow::Ok((device_id, secret))
        };
        let role = match credential.await {
            Ok((_, secret)) if is_gateway => {
                Role::Gateway { secret, sensors: BEHIND_GATEWAY.iter().map(|s| (*s).to_owned()).collect() }
            }
            Ok((device_id, secret)) => Role::Sensor { device_id, secret },
            Err(e) => {
                eprintln!("The demo's MQTT device {serial} does not start: {e}");
                continue;
            }
        };
        tokio::spawn(mqtt::run(addr, role, stop.clone()));
        started += 1;
    }
    started
}

/// The id of the device with this serial, creating it if needed.
async fn ensure(client: &Client, serial: &str, name: &str) -> anyhow::Result<String> {
    let query = DeviceQuery { q: Some(serial.into()), limit: Some(50), ..DeviceQuery::default() };
    if let Some(device) = client.devices(&query).await?.items.into_iter().find(|d| d.serial.as_deref() == Some(serial))
    {
        return Ok(device.id);
    }
    let labels = BTreeMap::from([("demo".to_owned(), "true".to_owned()), ("kind".to_owned(), "mqtt".to_owned())]);
    let req = DeviceCreate { serial: serial.into(), name: Some(name.into()), labels, ..DeviceCreate::default() };
    Ok(client.create_device(&req).await?.id)
}
