//! Letting a new connection in, the same way on every listener (HTTP and MQTT): accept without
//! spinning when descriptors run out, read the PROXY header from a listed balancer, then take
//! a place at the [gate](super::gate).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::{TcpListener, TcpStream};

use super::{
    gate::{Admitted, ConnectionGate, Refusal},
    proxy::{self, TrustedProxies},
};

/// The next connection on `listener`. An accept that fails (out of descriptors, most likely:
/// the gate keeps below the limit, but other files count too) pauses rather than spins.
pub async fn accept(listener: &TcpListener, door: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!(door, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Why a connection was not let in.
pub enum NotAdmitted {
    /// From a listed balancer, without a readable PROXY header in time (logged here).
    NoClient,
    /// The gate turned the client away.
    Refused(Refusal, SocketAddr),
}

/// Takes a connection accepted from `from` through the PROXY header, when `from` is a listed
/// balancer (within `patience`), and the gate: the client it stands for, and its place.
pub async fn admit(
    gate: &Arc<ConnectionGate>,
    proxies: &TrustedProxies,
    stream: &mut TcpStream,
    from: SocketAddr,
    patience: Duration,
) -> Result<(SocketAddr, Admitted), NotAdmitted> {
    let peer = if proxies.trusts(from.ip()) {
        match tokio::time::timeout(patience, proxy::read_header(stream, from)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                tracing::debug!(balancer = %from, error = %e, "PROXY header refused");
                return Err(NotAdmitted::NoClient);
            }
            Err(_) => {
                tracing::debug!(balancer = %from, "no PROXY header in time");
                return Err(NotAdmitted::NoClient);
            }
        }
    } else {
        from
    };
    match gate.admit(peer.ip()) {
        Ok(admitted) => Ok((peer, admitted)),
        Err(refusal) => Err(NotAdmitted::Refused(refusal, peer)),
    }
}
