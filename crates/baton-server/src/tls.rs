//! TLS for the listeners (HTTPS and MQTT over TLS): the server configuration read from the
//! PEM certificate chain and key the settings name. Handshakes happen per connection, bounded
//! by the header timeout (`app::serve`, `mqtt`).
//!
//! Clients may present a certificate (devices do, for mutual TLS). The handshake only proves
//! the client holds the certificate's key; who it is — and whether the certificate is still
//! good — is decided per connection from the certificate itself
//! ([`baton_core::certificates::authenticate`]: issued here, not revoked, not expired, the
//! device not decommissioned). Clients without one go on as before (secrets, sessions, tokens).

use std::{path::Path, sync::Arc};

use rustls::{
    DigitallySignedStruct, DistinguishedName, ServerConfig, ServerConnection, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
};

use baton_core::Error;

/// The certificate (DER) a client presented in its TLS handshake, carried with each of the
/// connection's requests (an HTTP extension) or into its MQTT session.
#[derive(Clone, Debug)]
pub struct ClientCertificate(pub Arc<[u8]>);

impl ClientCertificate {
    /// The end-entity certificate of a finished handshake, if the client sent one.
    pub fn of(connection: &ServerConnection) -> Option<Self> {
        connection.peer_certificates().and_then(|chain| chain.first()).map(|leaf| Self(Arc::from(leaf.as_ref())))
    }
}

/// Reads a PEM certificate chain and private key into a server configuration.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, Error> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| Error::Config(format!("cannot read {}: {e}", p.display())));
    let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{}: not a PEM certificate chain: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!("{}: no certificate found", cert.display())));
    }
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| Error::Config(format!("{}: {e}", key.display())))?
        .ok_or_else(|| Error::Config(format!("{}: no private key found", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(ClientKeyHolder { algorithms: provider.signature_verification_algorithms });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(format!("TLS certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Asks for a client certificate without requiring one, and checks only that the client holds
/// its key (the handshake signature); the certificate's standing is checked after the
/// handshake, against the database, so a revocation counts from the very next connection.
#[derive(Debug)]
struct ClientKeyHolder {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientKeyHolder {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
