//! The peer of the fleet benchmark: Mosquitto (already running on this machine, port 1883)
//! holding idle MQTT connections, measured in the same run as Baton.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::proc;

/// Mosquitto's memory per idle MQTT 3.1.1 connection, in bytes, from `connections` clients.
pub async fn mosquitto_per_connection(connections: usize) -> anyhow::Result<f64> {
    let pid = proc::pid_of("mosquitto").ok_or_else(|| anyhow::anyhow!("no single mosquitto process runs here"))?;
    let before = proc::rss_bytes(pid)?;
    let mut held = Vec::with_capacity(connections);
    for i in 0..connections {
        let mut stream = TcpStream::connect("127.0.0.1:1883").await?;
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
    tokio::time::sleep(Duration::from_secs(2)).await; // let the broker settle its buffers before reading its size
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
