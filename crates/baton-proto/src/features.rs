//! Optional abilities an agent announces in its `hello`: the server sends a message or opens a
//! stream only to agents that said they understand it, so an older agent is told to update
//! instead of being sent what it cannot read. Also reachable as `agent::feature`.

/// Carries out `deployment` messages (updates).
pub const DEPLOYMENTS: &str = "deployments";
/// Understands `stream_open` for terminals (it may still refuse each stream).
pub const STREAMS: &str = "streams";
/// Opens live-log streams.
pub const LOGS: &str = "logs";
/// Opens file streams (read, write, stat).
pub const FILES: &str = "files";
/// Carries out `support-bundle` commands.
pub const BUNDLES: &str = "bundles";
/// Opens tunnel streams (TCP to an allowed port).
pub const TUNNELS: &str = "tunnels";
/// Opens screen streams (its VNC server, view-only or control).
pub const SCREEN: &str = "screen";
