//! The peer of the benchmarks: Mosquitto, measured in the same run as Baton. The bench starts its
//! own broker (Debian's `mosquitto`) on a free port, so the figures are not blurred by a
//! long-running broker's earlier clients. The fleet bench measures its memory per idle MQTT
//! connection here; `bench mqtt` uses [`start_mosquitto`] for its side-by-side figures.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::proc;

/// A Mosquitto broker of the bench's own, on a free loopback port; stopped when dropped.
pub(super) struct Broker {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub address: String,
    _dir: tempfile::TempDir,
}

impl Broker {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Debian's `mosquitto` allowing anonymous clients and any number of connections, plus
/// `extra` configuration lines, and waits until it listens.
pub(super) async fn start_mosquitto(extra: &str) -> anyhow::Result<Broker> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("mosquitto.conf");
    std::fs::write(&config, format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n{extra}"))?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start mosquitto ({e}); install Debian's mosquitto"))?;
    let broker = Broker { child, address: format!("127.0.0.1:{port}"), _dir: dir };
    let started = Instant::now();
    while TcpStream::connect(&broker.address).await.is_err() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "mosquitto did not start listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(broker)
}

/// Mosquitto's memory per idle MQTT 3.1.1 connection, in bytes, from `connections` clients.
pub async fn mosquitto_per_connection(connections: usize) -> anyhow::Result<f64> {
    let broker = start_mosquitto("").await?;
    let address = broker.address.clone();
    let pid = broker.pid();
    let before = proc::rss_bytes(pid)?;
    let mut held = Vec::with_capacity(connections);
    for i in 0..connections {
        let mut stream = TcpStream::connect(&address).await?;
        stream.write_all(&connect_packet(&format!("baton-bench-peer-{i}"))).await?;
        let mut connack = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut connack)).await??;
        anyhow::ensure!(
            connack[0] == 0x20 && connack[3] == 0,
            "mosquitto refused the connection (code {})",
            connack[3]
        );
        held.push(stream);
    }
    let after = proc::rss_bytes(pid)?;
    drop(held);
    Ok(after.saturating_sub(before) as f64 / connections as f64)
}

/// A minimal MQTT 3.1.1 CONNECT: clean session, keep-alive 300 s, no credentials.
fn connect_packet(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    let remaining = 10 + 2 + id.len();
    let mut p = vec![0x10, remaining as u8, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x01, 0x2C];
    p.extend_from_slice(&(id.len() as u16).to_be_bytes());
    p.extend_from_slice(id);
    p
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_connect_packet_is_well_formed() {
        let p = super::connect_packet("abc");
        assert_eq!(p[0], 0x10);
        assert_eq!(usize::from(p[1]), p.len() - 2);
        assert_eq!(&p[p.len() - 3..], b"abc");
    }
}
