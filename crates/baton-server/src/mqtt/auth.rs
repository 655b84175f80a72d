//! Who an MQTT client is, from its CONNECT: a device with its id as user name and its secret as
//! password, a device with its secret alone as user name (ThingsBoard's access-token style), or
//! a device provisioning itself (user name `provision`). Anonymous clients are refused.

use baton_proto::{
    api::devices::DeviceStatus,
    mqtt::{Connect, reason},
};

use crate::state::AppState;
use baton_core::devices::credentials::{self, DeviceIdentity};

pub(super) enum Login {
    Device(DeviceIdentity),
    Provision,
}

/// A refused CONNECT: the MQTT 5 reason code and words for the client and the log.
pub(super) struct Refusal {
    pub reason: u8,
    pub text: String,
}

impl Refusal {
    fn new(reason: u8, text: impl Into<String>) -> Self {
        Self { reason, text: text.into() }
    }
}

pub(super) async fn login(app: &AppState, connect: &Connect) -> Result<Login, Refusal> {
    let username = connect.username.as_deref().unwrap_or_default();
    let password = connect.password.as_deref().unwrap_or_default();
    if username.is_empty() {
        return Err(Refusal::new(
            reason::BAD_USERNAME_OR_PASSWORD,
            "a device credential is required: user name = device id, password = device secret",
        ));
    }
    if username == "provision" {
        return Ok(Login::Provision);
    }
    let found = if password.is_empty() {
        credentials::authenticate_secret(&app.db, username).await
    } else {
        match std::str::from_utf8(password) {
            Ok(secret) => credentials::authenticate(&app.db, username, secret).await,
            Err(_) => Ok(None),
        }
    };
    let identity = match found {
        Ok(Some(identity)) => identity,
        Ok(None) => {
            return Err(Refusal::new(reason::BAD_USERNAME_OR_PASSWORD, "unknown device or wrong secret"));
        }
        Err(e) => {
            tracing::error!(error = %e, "could not check an MQTT login");
            return Err(Refusal::new(reason::SERVER_UNAVAILABLE, "the server could not check the credential; retry"));
        }
    };
    match identity.status {
        DeviceStatus::Active => Ok(Login::Device(identity)),
        DeviceStatus::Pending => {
            Err(Refusal::new(reason::NOT_AUTHORIZED, "the device waits for an administrator's approval"))
        }
        DeviceStatus::Decommissioned => {
            Err(Refusal::new(reason::NOT_AUTHORIZED, "the device is decommissioned; stop connecting"))
        }
    }
}
