//! Enrollment: the enrollment token and the device's serial are traded for a device id and
//! secret (and, over TLS, a client certificate for a key made here), which are stored before
//! anything else happens (so a crash cannot lose them).

use baton_proto::{
    agent::ENROLL_PATH,
    api::{
        enrollment::{EnrollRequest, EnrollResponse},
        problem::Problem,
    },
    deployment::VerificationKey,
    inventory::Inventory,
};

use crate::{
    AgentError, certificate,
    storage::{HeldCertificate, Identity},
};

/// Why an enrollment attempt failed.
#[derive(Debug)]
pub enum EnrollFailure {
    /// Will not work by retrying (bad token, decommissioned serial, invalid input).
    Fatal(AgentError),
    /// Try again later (network, server error, rate limit with its wait in seconds).
    Retry(String, Option<u64>),
}

/// What enrollment grants; the caller stores the identity and certificate and pins the keys.
pub struct Enrolled {
    pub identity: Identity,
    pub status: baton_proto::api::devices::DeviceStatus,
    /// The keys the tenant signs updates with.
    pub update_keys: Vec<VerificationKey>,
    /// The client certificate, when one was asked for.
    pub certificate: Option<HeldCertificate>,
}

/// Enrolls; with `with_certificate`, a key is made here and the server signs a certificate for
/// it, for mutual TLS.
pub async fn enroll(
    http: &reqwest::Client,
    server: &str,
    token: &str,
    serial: &str,
    inventory: Inventory,
    with_certificate: bool,
) -> Result<Enrolled, EnrollFailure> {
    let request =
        with_certificate.then(|| certificate::Request::new(serial)).transpose().map_err(EnrollFailure::Fatal)?;
    let req = EnrollRequest {
        token: token.to_owned(),
        serial: serial.to_owned(),
        inventory: Some(inventory),
        csr: request.as_ref().map(|r| r.csr.clone()),
    };
    let response =
        http.post(format!("{server}{ENROLL_PATH}")).json(&req).send().await.map_err(|e| {
            EnrollFailure::Retry(format!("cannot reach {server}: {}", crate::errors::innermost(&e)), None)
        })?;
    let status = response.status();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let body = response.bytes().await.map_err(|e| EnrollFailure::Retry(e.to_string(), None))?;
    if status.is_success() {
        let enrolled: EnrollResponse = serde_json::from_slice(&body)
            .map_err(|e| EnrollFailure::Retry(format!("unexpected enrollment answer: {e}"), None))?;
        let identity = Identity { server: server.to_owned(), device_id: enrolled.device_id, secret: enrolled.secret };
        let certificate = request.zip(enrolled.certificate).map(|(request, issued)| request.signed(issued));
        return Ok(Enrolled { identity, status: enrolled.status, update_keys: enrolled.update_keys, certificate });
    }
    let detail = serde_json::from_slice::<Problem>(&body)
        .map(|p| p.detail.unwrap_or(p.title))
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
    match status.as_u16() {
        429 => Err(EnrollFailure::Retry(detail, retry_after)),
        403 if detail.contains("decommissioned") => Err(EnrollFailure::Fatal(AgentError::Decommissioned)),
        400..=499 => Err(EnrollFailure::Fatal(AgentError::EnrollmentRefused(detail))),
        _ => Err(EnrollFailure::Retry(format!("server error {status}: {detail}"), None)),
    }
}
