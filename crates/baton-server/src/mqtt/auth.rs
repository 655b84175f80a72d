//! Who an MQTT client is, from its CONNECT: a device with its id as user name and its secret as
//! password, a device with its secret alone as user name (ThingsBoard's access-token style), or
//! a device provisioning itself (user name `provision`), or — over TLS — a device presenting
//! its client certificate (the user name, if any, must be its id; no password needed, as with
//! AWS IoT). Anonymous clients are refused.

use baton_proto::{
    api::devices::DeviceStatus,
    mqtt::{Connect, reason},
};

use crate::{state::AppState, tls::ClientCertificate};
use baton_core::{
    certificates,
    devices::credentials::{self, DeviceIdentity},
};

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

pub(super) async fn login(
    app: &AppState,
    connect: &Connect,
    certificate: Option<&ClientCertificate>,
) -> Result<Login, Refusal> {
    let username = connect.username.as_deref().unwrap_or_default();
    let password = connect.password.as_deref().unwrap_or_default();
    if let Some(certificate) = certificate
        && let Some(found) = by_certificate(app, certificate, username, password).await?
    {
        return admit(found);
    }
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
        Err(e) => return Err(unavailable(&e)),
    };
    admit(identity)
}

/// The device a client certificate names (`None`: none, so a secret may still decide). The
/// user name, if any, must be that device's id; a certificate that is not good any more is
/// refused outright unless a secret comes with it.
async fn by_certificate(
    app: &AppState,
    certificate: &ClientCertificate,
    username: &str,
    password: &[u8],
) -> Result<Option<DeviceIdentity>, Refusal> {
    match certificates::authenticate(&app.db, &certificate.0).await {
        Ok(Some(device)) if username.is_empty() || username == device.device_id => Ok(Some(device)),
        Ok(Some(_)) => Err(Refusal::new(
            reason::NOT_AUTHORIZED,
            "the client certificate belongs to another device than the user name says",
        )),
        Ok(None) if password.is_empty() => Err(Refusal::new(
            reason::BAD_USERNAME_OR_PASSWORD,
            "the client certificate is not recognised: revoked, expired, or not issued by this server",
        )),
        Ok(None) => Ok(None),
        Err(e) => Err(unavailable(&e)),
    }
}

fn unavailable(e: &baton_core::Error) -> Refusal {
    tracing::error!(error = %e, "could not check an MQTT login");
    Refusal::new(reason::SERVER_UNAVAILABLE, "the server could not check the credential; retry")
}

/// A known device may go on when it is active.
fn admit(identity: DeviceIdentity) -> Result<Login, Refusal> {
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
