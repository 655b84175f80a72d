//! The device's VNC server, from the agent's side: connecting to it (`host:port`, or a Unix
//! socket's path) and the RFB handshake up to its security result, with no authentication or
//! with VNC authentication (the password in `screen_password_file`). Whatever goes wrong is
//! said in words that name the setting to change.

use std::time::Duration;

use baton_proto::rfb::{SECURITY_NONE, SECURITY_VNC, Version, security_name};
use des::{
    Des,
    cipher::{BlockCipherEncrypt, KeyInit},
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long the VNC server has to accept the connection and finish the handshake.
const PATIENCE: Duration = Duration::from_secs(10);

/// The longest failure reason read from a server.
const MAX_REASON: u32 = 4096;

/// A byte stream to the VNC server, whatever carries it.
pub(super) trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}
pub(super) type Connection = Box<dyn Conn>;

/// Connects to the server at `address`: a path (starting with `/`) is a Unix socket.
pub(super) async fn connect(address: &str) -> Result<Connection, String> {
    let connecting = async {
        if address.starts_with('/') {
            unix(address).await
        } else {
            let tcp = tokio::net::TcpStream::connect(address).await?;
            let _ = tcp.set_nodelay(true);
            Ok(Box::new(tcp) as Connection)
        }
    };
    let how = "start a VNC server there, point `[remote] screen_vnc` at yours, or set `screen_x11vnc = true` for the agent to start x11vnc";
    match tokio::time::timeout(PATIENCE, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("cannot connect to the VNC server at {address} on the device ({e}): {how}")),
        Err(_) => {
            Err(format!("the VNC server at {address} did not accept a connection within {} s", PATIENCE.as_secs()))
        }
    }
}

#[cfg(unix)]
pub(super) async fn unix(path: &str) -> std::io::Result<Connection> {
    Ok(Box::new(tokio::net::UnixStream::connect(path).await?))
}

#[cfg(not(unix))]
async fn unix(_path: &str) -> std::io::Result<Connection> {
    Err(std::io::Error::other("this system has no Unix sockets: give `host:port`"))
}

/// The handshake with the server, up to a successful security result; the next message is the
/// viewer's ClientInit.
pub(super) async fn handshake(conn: &mut Connection, password: Option<&[u8]>, address: &str) -> Result<(), String> {
    match tokio::time::timeout(PATIENCE, secure(conn, password, address)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(Failure::Said(reason))) => Err(reason),
        Ok(Err(Failure::Io(e))) => Err(format!("the VNC server at {address} broke off the handshake: {e}")),
        Err(_) => {
            Err(format!("the VNC server at {address} did not finish its handshake within {} s", PATIENCE.as_secs()))
        }
    }
}

enum Failure {
    Said(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

async fn secure(conn: &mut Connection, password: Option<&[u8]>, address: &str) -> Result<(), Failure> {
    let mut greeting = [0u8; 12];
    conn.read_exact(&mut greeting).await?;
    let version = Version::read(&greeting)
        .map_err(|e| Failure::Said(format!("{address} is not a VNC server this agent can use: {e}")))?;
    conn.write_all(version.greeting()).await?;
    let offered = if version == Version::V3_3 {
        match conn.read_u32().await? {
            0 => return Err(refused(address, &read_reason(conn).await?)),
            kind => vec![u8::try_from(kind).unwrap_or(0)],
        }
    } else {
        let count = conn.read_u8().await?;
        if count == 0 {
            return Err(refused(address, &read_reason(conn).await?));
        }
        let mut kinds = vec![0u8; usize::from(count)];
        conn.read_exact(&mut kinds).await?;
        kinds
    };
    let chosen = choose(&offered, password.is_some(), address).map_err(Failure::Said)?;
    if version != Version::V3_3 {
        conn.write_all(&[chosen]).await?;
    }
    if chosen == SECURITY_VNC {
        let mut challenge = [0u8; 16];
        conn.read_exact(&mut challenge).await?;
        conn.write_all(&vnc_response(password.unwrap_or_default(), &challenge)).await?;
    }
    // 3.3 and 3.7 send no result for None.
    if (chosen == SECURITY_VNC || version == Version::V3_8) && conn.read_u32().await? != 0 {
        let said = if version == Version::V3_8 { read_reason(conn).await? } else { String::new() };
        let hint =
            if chosen == SECURITY_VNC { " (is the password in `[remote] screen_password_file` right?)" } else { "" };
        return Err(Failure::Said(format!("the VNC server at {address} refused the agent{hint}: {said}")));
    }
    Ok(())
}

/// The security type to use of those offered: None, else VNC authentication with a password.
fn choose(offered: &[u8], have_password: bool, address: &str) -> Result<u8, String> {
    if offered.contains(&SECURITY_NONE) {
        Ok(SECURITY_NONE)
    } else if offered.contains(&SECURITY_VNC) && have_password {
        Ok(SECURITY_VNC)
    } else if offered.contains(&SECURITY_VNC) {
        Err(format!(
            "the VNC server at {address} asks for a password: put it in a file the agent can read and name it in `[remote] screen_password_file`"
        ))
    } else {
        let names: Vec<String> = offered.iter().map(|k| security_name(*k)).collect();
        Err(format!(
            "the VNC server at {address} offers only {}; the agent speaks None and VNC authentication: allow one of those on the server",
            names.join(", ")
        ))
    }
}

fn refused(address: &str, reason: &str) -> Failure {
    Failure::Said(format!("the VNC server at {address} refused the connection: {reason}"))
}

async fn read_reason(conn: &mut Connection) -> Result<String, Failure> {
    let len = conn.read_u32().await?;
    let mut text = vec![0u8; len.min(MAX_REASON) as usize];
    conn.read_exact(&mut text).await?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// VNC authentication's answer: the challenge encrypted with DES, keyed by the password's first
/// 8 bytes (zero-padded), each byte's bits in reverse order.
fn vnc_response(password: &[u8], challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password) {
        *k = p.reverse_bits();
    }
    let cipher = Des::new(&key.into());
    let mut response = *challenge;
    for half in response.chunks_exact_mut(8) {
        let mut block: [u8; 8] = half.try_into().unwrap_or_default();
        let mut array = block.into();
        cipher.encrypt_block(&mut array);
        block = array.into();
        half.copy_from_slice(&block);
    }
    response
}

/// The password for VNC authentication: the first line of `path`.
pub(super) fn read_password(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read(path)
        .map_err(|e| format!("cannot read `[remote] screen_password_file` {}: {e}", path.display()))?;
    let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
    Ok(line.strip_suffix(b"\r").unwrap_or(line).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vnc_answer_is_des_with_the_password_bits_reversed() {
        let challenge: [u8; 16] = std::array::from_fn(|i| i as u8);
        // `openssl enc -des-ecb -K 0e86ceceeef64e26 -nopad` of the same challenge.
        let want = [0xb8, 0x66, 0x92, 0x41, 0x25, 0xc8, 0xee, 0xbb, 0x9d, 0xeb, 0xc1, 0xdb, 0x61, 0xc5, 0x38, 0xe2];
        assert_eq!(vnc_response(b"password", &challenge), want);
        assert_eq!(vnc_response(b"password and more", &challenge), want, "only 8 bytes count");
    }

    #[test]
    fn none_is_preferred_and_a_missing_password_or_security_type_says_what_to_set() {
        assert_eq!(choose(&[2, 1], false, "a"), Ok(SECURITY_NONE));
        assert_eq!(choose(&[2], true, "a"), Ok(SECURITY_VNC));
        assert!(choose(&[2], false, "a").expect_err("no password").contains("screen_password_file"));
        let only_tls = choose(&[18, 19], true, "a").expect_err("no common type");
        assert!(only_tls.contains("TLS (18), VeNCrypt (19)"), "{only_tls}");
    }
}
