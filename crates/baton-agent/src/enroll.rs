//! Enrollment: the enrollment token and the device's serial are traded for a device id and
//! secret, which are stored before anything else happens (so a crash cannot lose them).

use baton_proto::{
    agent::ENROLL_PATH,
    api::{
        enrollment::{EnrollRequest, EnrollResponse},
        problem::Problem,
    },
    deployment::VerificationKey,
    inventory::Inventory,
};

use crate::{AgentError, storage::Identity};

/// Why an enrollment attempt failed.
#[derive(Debug)]
pub enum EnrollFailure {
    /// Will not work by retrying (bad token, decommissioned serial, invalid input).
    Fatal(AgentError),
    /// Try again later (network, server error, rate limit with its wait in seconds).
    Retry(String, Option<u64>),
}

/// Enrolls and returns the identity (the caller stores it), the device's status and the keys
/// its tenant signs updates with (the caller pins them).
pub async fn enroll(
    http: &reqwest::Client,
    server: &str,
    token: &str,
    serial: &str,
    inventory: Inventory,
) -> Result<(Identity, baton_proto::api::devices::DeviceStatus, Vec<VerificationKey>), EnrollFailure> {
    let req = EnrollRequest { token: token.to_owned(), serial: serial.to_owned(), inventory: Some(inventory) };
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
        return Ok((identity, enrolled.status, enrolled.update_keys));
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
