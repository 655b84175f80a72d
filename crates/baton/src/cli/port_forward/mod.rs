//! `baton port-forward <device> [LOCAL_PORT:]HOST:PORT …`: local TCP ports forwarded to ports on
//! (or behind) a device, through the server, as `kubectl port-forward` and `ssh -L` do. Each
//! mapping ([`mapping`]) is one tunnel session: the CLI listens on its local port first (so a
//! port in use fails before anything is opened), opens the session, and holds its attach
//! WebSocket open — the server first checks that the device allows and reaches the port, then
//! says `opened`, and later `closed` with the reason. Each local connection accepted is a
//! WebSocket of its own ([`connection`]), authenticated with the CLI's token.
//!
//! One line per mapping once it is open (`Forwarding 127.0.0.1:8080 -> localhost:80 on dev1
//! (session …)`), with the port the system chose when the local port was 0. Ctrl-C (or SIGTERM)
//! closes every session and exits 0; a session that ends otherwise (refused, closed by someone,
//! idle, the device gone) ends the command with its reason and exit status 1.

mod connection;
mod mapping;

use std::{io::Write, net::SocketAddr, time::Duration};

use anyhow::Context;
use baton_client::Client;
use baton_proto::api::remote::{AttachServerMessage, SessionCreate, SessionKind};
use futures::{SinkExt, StreamExt, future::select_all};
use tokio::{net::TcpListener, sync::watch};
use tokio_tungstenite::tungstenite::Message;

use self::mapping::Mapping;
use super::{
    attach::{self, Start, Ws},
    devices, tty,
};

#[derive(clap::Args)]
pub struct PortForwardArgs {
    /// The device: its id, serial or name.
    device: String,
    /// `[LOCAL_PORT:]HOST:PORT`: `8080:localhost:80`, `8080:80` (the device's localhost), `5432`
    /// (the same port here), `0:80` or `:80` (a free local port). HOST is as the device sees it;
    /// the device's agent must allow the port (`[remote] tunnel_ports`) and host (`tunnel_hosts`).
    #[arg(required = true, value_name = "[LOCAL_PORT:]HOST:PORT")]
    mappings: Vec<Mapping>,
    /// The local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::IpAddr,
}

/// A mapping with its local listener and its open session.
struct Tunnel {
    mapping: Mapping,
    listener: TcpListener,
    local: SocketAddr,
    session: String,
    attached: Ws,
}

pub async fn run(args: PortForwardArgs, client: &Client) -> anyhow::Result<()> {
    let device = devices::resolve(client, &args.device).await?;
    let ca = super::ca_pem()?;
    let mut tunnels = Vec::with_capacity(args.mappings.len());
    for mapping in args.mappings {
        let tunnel = open(client, &device, &args.device, mapping, args.address, ca.as_deref()).await?;
        say!("Forwarding {} -> {} on {} (session {})", tunnel.local, tunnel.mapping, args.device, tunnel.session);
        tunnels.push(tunnel);
    }
    let stop = tty::stop_signal()?;
    let (stopping, stopped) = watch::channel(false);
    let mut serving: Vec<_> =
        tunnels.into_iter().map(|t| Box::pin(serve(t, client.clone(), ca.clone(), stopped.clone()))).collect();
    let ended = tokio::select! {
        (reason, index, _) = select_all(serving.iter_mut()) => Some((reason, index)),
        _ = stop => None,
    };
    // Ctrl-C closes every session; one that ended by itself takes the others with it.
    let _ = stopping.send(true);
    if let Some((_, index)) = &ended {
        drop(serving.remove(*index));
    }
    futures::future::join_all(serving).await;
    match ended {
        None => Ok(()),
        Some((reason, _)) => Err(anyhow::anyhow!(reason)),
    }
}

/// Listens on the mapping's local port, opens its session and waits until the device accepts it.
async fn open(
    client: &Client,
    device: &str,
    named: &str,
    mapping: Mapping,
    address: std::net::IpAddr,
    ca: Option<&[u8]>,
) -> anyhow::Result<Tunnel> {
    let listener = TcpListener::bind((address, mapping.local_port))
        .await
        .with_context(|| format!("cannot listen on {}", SocketAddr::new(address, mapping.local_port)))?;
    let local = listener.local_addr()?;
    let req = SessionCreate {
        kind: SessionKind::Tunnel,
        host: Some(mapping.host.clone()),
        port: Some(mapping.port),
        ..Default::default()
    };
    let ticket = client.open_session(device, &req).await?;
    let mut attached = attach::connect(&client.attach_url(&ticket), ca).await?;
    if let Start::Refused(reason) = attach::start(&mut attached).await? {
        anyhow::bail!("the tunnel to {mapping} on {named} was refused: {reason}");
    }
    Ok(Tunnel { mapping, listener, local, session: ticket.session.id, attached })
}

/// Accepts local connections until the session ends (its reason) or `stop` turns true (then
/// the session is closed, and waited for a moment so its end is recorded as the user's).
async fn serve(tunnel: Tunnel, client: Client, ca: Option<Vec<u8>>, mut stop: watch::Receiver<bool>) -> String {
    let Tunnel { mapping, listener, session, mut attached, .. } = tunnel;
    let url = client.tunnel_connect_url(&session);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let (url, token, ca, target) = (url.clone(), client.token().map(str::to_owned), ca.clone(), mapping.clone());
                    tokio::spawn(async move {
                        let ended = match attach::open(&url, token.as_deref(), ca.as_deref()).await {
                            Ok(ws) => connection::pipe(tcp, ws).await,
                            Err(refused) => Err(refused.to_string()),
                        };
                        if let Err(reason) = ended {
                            let _ = writeln!(std::io::stderr(), "baton: the connection from {peer} to {target}: {reason}");
                        }
                    });
                }
                // Out of file descriptors, most likely: the connections open may end and free some.
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "baton: cannot accept a connection on {mapping}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            frame = attached.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(AttachServerMessage::Closed { reason, .. }) = serde_json::from_str(&text) {
                        return format!("the tunnel to {mapping} ended: {reason}");
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return format!("the connection to the server was lost: {e}"),
                None => return "the server closed the tunnel session without a word".to_owned(),
            },
            _ = stop.wait_for(|s| *s) => {
                let _ = attached.send(Message::Close(None)).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), async { while let Some(Ok(_)) = attached.next().await {} }).await;
                return "stopped".to_owned();
            }
        }
    }
}
