//! Small helpers the remote-support tests share: a server with a bootstrap token and its
//! client, bytes that do not compress, their SHA-256, a device's events, and an API refusal's
//! status and detail.

use baton_client::{Client, ClientError};
use baton_proto::api::events::{Event, EventQuery};
use sha2::{Digest, Sha256};

use super::Server;

/// `baton serve` with `bootstrap` as its bootstrap token (agents beat every 2 s), and a client
/// signed in with it.
pub fn server_with(bootstrap: &str) -> (Server, Client) {
    let server = Server::start(
        &[("BATON_BOOTSTRAP_TOKEN", bootstrap), ("BATON_HEARTBEAT_SECS", "2")],
        &["--http-addr", "127.0.0.1:0"],
    );
    let client = Client::new(&server.url, Some(bootstrap.into()), None).expect("client");
    (server, client)
}

/// `len` bytes that do not compress (xorshift), different for each `seed`.
pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The device's events of `kind`, newest first.
pub async fn device_events(client: &Client, device: &str, kind: &str) -> Vec<Event> {
    let query = EventQuery { device: Some(device.into()), kind: Some(kind.into()), limit: None, cursor: None };
    client.events(&query).await.expect("events").items
}

/// Waits for the `n`-th event of `kind` on the device; all of them, newest first.
pub async fn events(client: &Client, device: &str, kind: &str, n: usize) -> Vec<Event> {
    baton_testkit::eventually(&format!("{n} {kind} events"), || async {
        let found = device_events(client, device, kind).await;
        (found.len() >= n).then_some(found)
    })
    .await
}

/// The status and detail of the API's refusal.
pub fn problem(result: Result<impl std::fmt::Debug, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, problem }) => (status.as_u16(), problem.detail.unwrap_or_default()),
        other => panic!("expected a problem, got {other:?}"),
    }
}
