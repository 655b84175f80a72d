//! The PROXY protocol (HAProxy's, v1 text and v2 binary): a load balancer in front of Baton
//! starts each connection with a header naming the real client, so the per-address limits and
//! the logs see clients, not the balancer. Read only from the balancers an operator lists
//! (`proxy_protocol_from`); anyone else could name any address they liked.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest v1 header, CRLF included (the specification's figure).
const V1_MAX: usize = 107;
/// What every v2 header starts with.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The most address data a v2 header may carry here (Unix sockets' 216 plus TLVs, generously).
const V2_MAX_LEN: usize = 1024;

/// The balancers whose connections carry a PROXY header.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses the `proxy_protocol_from` setting: addresses or CIDR blocks.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in entries {
            let entry = entry.trim();
            let net = IpNet::from_str(entry)
                .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                .map_err(|_| format!("proxy_protocol_from: `{entry}` is not an address or CIDR block"))?;
            nets.push(net);
        }
        Ok(Self(nets))
    }

    /// Whether connections from `peer` start with a PROXY header.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&peer))
    }
}

/// Reads the PROXY header at the start of `stream` and returns the client it names; `peer`
/// (the balancer) when the header says the connection is the balancer's own (a health check).
/// Reads exactly the header, so what follows is untouched.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S, peer: SocketAddr) -> Result<SocketAddr, String> {
    let mut first = [0u8; 12];
    stream.read_exact(&mut first[..5]).await.map_err(|e| format!("no PROXY header: {e}"))?;
    if &first[..5] == b"PROXY" {
        return read_v1(stream, peer).await;
    }
    stream.read_exact(&mut first[5..]).await.map_err(|e| format!("no PROXY header: {e}"))?;
    if first != V2_SIGNATURE {
        return Err("the connection does not start with a PROXY header".into());
    }
    read_v2(stream, peer).await
}

async fn read_v1<S: AsyncRead + Unpin>(stream: &mut S, peer: SocketAddr) -> Result<SocketAddr, String> {
    let mut line = b"PROXY".to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err("a PROXY v1 header longer than 107 bytes".into());
        }
        line.push(stream.read_u8().await.map_err(|e| format!("a PROXY v1 header cut short: {e}"))?);
    }
    let text = std::str::from_utf8(&line[..line.len() - 2]).map_err(|_| "a PROXY v1 header that is not ASCII")?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(peer),
        ["PROXY", family @ ("TCP4" | "TCP6"), source, _destination, port, _destination_port] => {
            let ip = IpAddr::from_str(source).map_err(|_| format!("PROXY v1: `{source}` is not an address"))?;
            if ip.is_ipv4() != (*family == "TCP4") {
                return Err(format!("PROXY v1: `{source}` is not a {family} address"));
            }
            let port = port.parse::<u16>().map_err(|_| format!("PROXY v1: `{port}` is not a port"))?;
            Ok(SocketAddr::new(ip, port))
        }
        _ => Err(format!("PROXY v1: cannot read `{text}`")),
    }
}

async fn read_v2<S: AsyncRead + Unpin>(stream: &mut S, peer: SocketAddr) -> Result<SocketAddr, String> {
    let cut = |e: std::io::Error| format!("a PROXY v2 header cut short: {e}");
    let version_command = stream.read_u8().await.map_err(cut)?;
    let family = stream.read_u8().await.map_err(cut)?;
    let len = usize::from(stream.read_u16().await.map_err(cut)?);
    if version_command >> 4 != 2 {
        return Err(format!("PROXY v2: version {} is not 2", version_command >> 4));
    }
    if len > V2_MAX_LEN {
        return Err(format!("PROXY v2: {len} bytes of addresses is too many"));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.map_err(cut)?;
    match (version_command & 0x0f, family >> 4) {
        // LOCAL: the balancer's own connection (a health check).
        (0, _) => Ok(peer),
        (1, 1) if len >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Ok(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([body[8], body[9]])))
        }
        (1, 2) if len >= 36 => {
            let octets: [u8; 16] = body[..16].try_into().map_err(|_| "PROXY v2: a short IPv6 address")?;
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), u16::from_be_bytes([body[32], body[33]])))
        }
        // UNSPEC or a Unix socket: no client address to give.
        (1, 0 | 3) => Ok(peer),
        (1, _) => Err("PROXY v2: addresses shorter than their family needs".into()),
        (command, _) => Err(format!("PROXY v2: unknown command {command}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BALANCER: &str = "10.0.0.9:40000";

    async fn read(bytes: &[u8]) -> (Result<SocketAddr, String>, Vec<u8>) {
        let mut input = bytes;
        let got = read_header(&mut input, BALANCER.parse().expect("addr")).await;
        (got, input.to_vec())
    }

    #[tokio::test]
    async fn v1_names_the_client_and_leaves_the_request_untouched() {
        let (got, rest) = read(b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 8080\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(got, Ok("192.0.2.7:51234".parse().expect("addr")));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (got, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n").await;
        assert_eq!(got, Ok("[2001:db8::7]:51234".parse().expect("addr")));
        let (got, _) = read(b"PROXY UNKNOWN\r\n").await;
        assert_eq!(got, Ok(BALANCER.parse().expect("addr")));
    }

    #[tokio::test]
    async fn v2_names_the_client_and_local_means_the_balancer() {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 7, 10, 0, 0, 1, 0xc8, 0x22, 0x1f, 0x90]);
        header.extend_from_slice(b"\x10\x00");
        let (got, rest) = read(&header).await;
        assert_eq!(got, Ok("192.0.2.7:51234".parse().expect("addr")));
        assert_eq!(rest, b"\x10\x00", "the MQTT CONNECT after it is left alone");
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(read(&local).await.0, Ok(BALANCER.parse().expect("addr")));
    }

    #[tokio::test]
    async fn anything_else_is_refused_with_the_reason() {
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 2\r\n",
            b"PROXY TCP4 192.0.2.7",
            &[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(30)[..],
        ] {
            assert!(read(bad).await.0.is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(read(&v2).await.0.is_err(), "an absurd length");
    }

    #[test]
    fn only_listed_balancers_are_trusted() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into(), "2001:db8::1".into()]).expect("parses");
        assert!(trusted.trusts("10.1.2.3".parse().expect("ip")));
        assert!(trusted.trusts("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(trusted.trusts("2001:db8::1".parse().expect("ip")));
        assert!(!trusted.trusts("192.0.2.1".parse().expect("ip")));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
    }
}
