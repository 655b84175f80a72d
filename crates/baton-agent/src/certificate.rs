//! The device's client certificate, for mutual TLS. Its key is made here (ECDSA P-256) and
//! never leaves the device: the server signs a request for it — at enrollment, and at each
//! renewal, with a new key each time. The certificate and its key are kept in the state
//! directory (mode 0600) and presented in every TLS handshake through [`Presenter`], whose
//! certificate a renewal swaps in place, so the HTTP and WebSocket clients built around it stay
//! as they are. A renewal is due when a third of the certificate's lifetime is left.

use std::sync::{Arc, RwLock};

use baton_proto::{
    agent::{CERTIFICATE_PATH, DEVICE_ID_HEADER},
    api::{
        certificates::{CertificateRequest, IssuedCertificate},
        problem::Problem,
    },
};
use rustls::{SignatureScheme, client::ResolvesClientCert, sign::CertifiedKey};

use crate::{
    AgentError,
    storage::{HeldCertificate, Identity},
};

/// A new key and a signing request for it, waiting for the server's signature.
pub struct Request {
    key_pem: String,
    pub csr: String,
}

impl Request {
    /// Makes a key and a request naming `subject` (the server sets the real subject anyway).
    pub fn new(subject: &str) -> Result<Self, AgentError> {
        let fail = |e: rcgen::Error| AgentError::State(format!("cannot make a certificate request: {e}"));
        let key = rcgen::KeyPair::generate().map_err(fail)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, subject);
        let csr = params.serialize_request(&key).and_then(|r| r.pem()).map_err(fail)?;
        Ok(Self { key_pem: key.serialize_pem(), csr })
    }

    /// The request's key with the certificate the server signed for it.
    pub fn signed(self, issued: IssuedCertificate) -> HeldCertificate {
        HeldCertificate {
            certificate: issued.certificate,
            private_key: self.key_pem,
            not_before: issued.not_before.timestamp_millis(),
            not_after: issued.not_after.timestamp_millis(),
        }
    }
}

/// When a certificate should be renewed (Unix ms): when a third of its lifetime is left.
pub fn renew_at(held: &HeldCertificate) -> i64 {
    held.not_after - (held.not_after - held.not_before) / 3
}

/// Asks the server to sign a new key, proving who the device is with the current certificate
/// (the TLS layer presents it) or the secret, if it still has one.
pub async fn renew(http: &reqwest::Client, identity: &Identity) -> Result<HeldCertificate, AgentError> {
    let request = Request::new(&identity.device_id)?;
    let mut post = http
        .post(format!("{}{CERTIFICATE_PATH}", identity.server))
        .header(DEVICE_ID_HEADER, &identity.device_id)
        .json(&CertificateRequest { csr: request.csr.clone() });
    if !identity.secret.is_empty() {
        post = post.bearer_auth(&identity.secret);
    }
    let response = post
        .send()
        .await
        .map_err(|e| AgentError::Network(format!("cannot renew the certificate: {}", crate::errors::innermost(&e))))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| AgentError::Network(e.to_string()))?;
    if !status.is_success() {
        let detail = serde_json::from_slice::<Problem>(&body).map(|p| p.detail.unwrap_or(p.title)).unwrap_or_default();
        return Err(AgentError::Network(format!("the server refused to renew the certificate ({status}): {detail}")));
    }
    let issued: IssuedCertificate = serde_json::from_slice(&body)
        .map_err(|e| AgentError::Network(format!("unexpected certificate answer: {e}")))?;
    Ok(request.signed(issued))
}

/// Presents the device's current certificate in TLS handshakes (none until it has one).
#[derive(Debug, Default)]
pub struct Presenter {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl Presenter {
    /// Presents `held` from the next handshake on.
    pub fn present(&self, held: &HeldCertificate) -> Result<(), AgentError> {
        let bad =
            |what: &str| AgentError::State(format!("the stored certificate is unusable ({what}); it will be renewed"));
        let chain = rustls_pemfile::certs(&mut held.certificate.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad("certificate"))?;
        let key =
            rustls_pemfile::private_key(&mut held.private_key.as_bytes()).ok().flatten().ok_or_else(|| bad("key"))?;
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| bad(&e.to_string()))?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(certified));
        Ok(())
    }

    pub fn holds(&self) -> bool {
        self.current.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }
}

impl ResolvesClientCert for Presenter {
    fn resolve(&self, _root_hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn has_certs(&self) -> bool {
        self.holds()
    }
}
