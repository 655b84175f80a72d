//! Use cases that span a device and the work waiting for it, above both `devices` and
//! `commands` so neither imports the other: retiring a device (decommission) and turning a
//! pending one away (reject).

use baton_proto::api::devices::{Device, DeviceStatus};

use crate::{
    Error,
    access::TenantScope,
    bus::{Message, SharedBus},
    commands, devices, events,
    store::Db,
};

/// Retires a device: its credentials stop opening anything (its certificates are revoked),
/// its waiting commands are canceled, a live connection is told and closed, and it is kept
/// with its history. With `wipe`, the agent erases its state and identity when told.
pub async fn decommission(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    id: &str,
    wipe: bool,
) -> Result<Device, Error> {
    let device = devices::get(db, scope, id).await?;
    if device.status != DeviceStatus::Decommissioned || wipe {
        devices::mark_decommissioned(db, scope, id, wipe).await?;
        let canceled = commands::delivery::cancel_all_for(db, scope, id).await?;
        let revoked = crate::certificates::revoke_all(db, scope, id, "decommissioned").await?;
        bus.publish(Message::Decommissioned { tenant: scope.id().to_owned(), device_id: id.to_owned(), wipe });
        let data = serde_json::json!({"wipe": wipe, "commands_canceled": canceled, "certificates_revoked": revoked});
        events::record(db, bus, scope, Some(id), events::kind::DECOMMISSIONED, data).await;
    }
    devices::get(db, scope, id).await
}

/// Turns a pending device away: it is decommissioned (and so refused from now on).
pub async fn reject(db: &Db, bus: &SharedBus, scope: &TenantScope, id: &str) -> Result<Device, Error> {
    let device = devices::get(db, scope, id).await?;
    if device.status != DeviceStatus::Pending {
        return Err(Error::Conflict(format!("device {id} is {}, not pending", device.status.as_str())));
    }
    events::record(db, bus, scope, Some(id), events::kind::REJECTED, serde_json::json!({})).await;
    decommission(db, bus, scope, id, false).await
}
