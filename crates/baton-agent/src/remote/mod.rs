//! Remote support on the device: the streams the server opens on this connection. Each
//! capability is off unless the device's config enables it (`[remote] terminal = true`,
//! `tunnel_ports`, `screen`), and an optional consent hook asks the person at the device, once
//! per session (a tunnel's many connections ask once); a refusal goes back with its reason.
//! Streams live as long as the connection: when it ends, their terminals are closed.
//!
//! Flow control: the agent sends a stream's output only within the server's credit, and credits
//! the server for input once it is written to the terminal (see `baton_proto::streams`).

mod files;
mod logs;
mod screen;
mod terminal;
mod tunnel;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use baton_proto::{
    agent::AgentMessage,
    streams::{self, Flow, StreamKind, StreamOpen},
};
use bytes::Bytes;
use tokio::sync::{OnceCell, Semaphore, mpsc};

use crate::config::RemoteConfig;

/// How long the consent hook has to answer.
const CONSENT_TIMEOUT: Duration = Duration::from_secs(60);

/// What the stream tasks ask the session to send.
pub enum Outgoing {
    Message(AgentMessage),
    Data(u32, Bytes),
}

/// What the session hands a stream's task.
#[derive(Debug)]
pub(crate) enum Input {
    Data(Bytes),
    Resize(u16, u16),
    Close(String),
}

struct Handle {
    input: mpsc::UnboundedSender<Input>,
    /// The server's credit for this stream's output; closed when the stream ends, so an output
    /// thread waiting for credit lets go of its terminal.
    credit: Arc<Semaphore>,
    /// Input received and not yet credited back (the server stays within the window), output
    /// sent and not yet credited by the server.
    flow: Flow,
}

/// The consent hook's answer for each session, asked once: `None` approves.
type Consents = Arc<Mutex<HashMap<String, Arc<OnceCell<Option<String>>>>>>;

/// One connection's streams.
pub struct Streams {
    config: Arc<RemoteConfig>,
    consents: Consents,
    handles: HashMap<u32, Handle>,
    tx: mpsc::Sender<Outgoing>,
    /// What to send, from every stream of this connection.
    pub outgoing: mpsc::Receiver<Outgoing>,
}

impl Streams {
    pub fn new(config: Arc<RemoteConfig>) -> Self {
        let (tx, outgoing) = mpsc::channel(64);
        Streams { config, consents: Consents::default(), handles: HashMap::new(), tx, outgoing }
    }

    /// The server asks for a stream: refused at once (with the reason) or opened in the background.
    pub fn open(&mut self, open: StreamOpen) -> Option<AgentMessage> {
        let stream = open.stream;
        if stream == 0 || self.handles.contains_key(&stream) {
            return Some(refused(stream, "that stream number is in use"));
        }
        let allowed = match &open.kind {
            StreamKind::Terminal { .. } => self.config.terminal,
            StreamKind::Logs(_) => self.config.logs,
            StreamKind::FileRead { .. } | StreamKind::FileWrite { .. } | StreamKind::FileStat { .. } => {
                self.config.files
            }
            StreamKind::Tunnel { host, port } => {
                if let Err(reason) = tunnel::allowed(&self.config, host, *port) {
                    tracing::info!(session_id = %open.session_id, user = %open.user, %reason, "refused a tunnel");
                    return Some(refused(stream, &reason));
                }
                true
            }
            StreamKind::Screen { .. } => self.config.screen,
        };
        if !allowed {
            let what = open.kind.capability();
            let reason = format!(
                "remote {what} is off on this device; its owner can allow it with `[remote] {what} = true` in the agent's config"
            );
            tracing::info!(session_id = %open.session_id, user = %open.user, "refused a remote {what}: not enabled");
            return Some(refused(stream, &reason));
        }
        let (input_tx, input) = mpsc::unbounded_channel();
        let flow = Flow::new(open.kind.window(), open.window);
        let credit = Arc::new(Semaphore::new(flow.window() as usize));
        self.handles.insert(stream, Handle { input: input_tx, credit: credit.clone(), flow });
        let (config, tx) = (self.config.clone(), self.tx.clone());
        let asked = {
            let mut consents = self.consents.lock().unwrap_or_else(|p| p.into_inner());
            if consents.len() >= 1024 {
                // Old sessions' answers: forgetting them costs at most a question asked again.
                consents.clear();
            }
            consents.entry(open.session_id.clone()).or_default().clone()
        };
        tokio::spawn(async move {
            if let Some(reason) = asked.get_or_init(|| consent(&config, &open)).await.clone() {
                let _ = tx.send(Outgoing::Message(refused(stream, &reason))).await;
                return;
            }
            match open.kind {
                StreamKind::Terminal { cols, rows, command } => {
                    tracing::info!(session_id = %open.session_id, user = %open.user, "remote terminal opening");
                    terminal::run(
                        &config,
                        stream,
                        cols,
                        rows,
                        &command,
                        &open.session_id,
                        &open.user,
                        input,
                        credit,
                        tx,
                    )
                    .await;
                }
                StreamKind::Logs(query) => logs::run(&config, stream, query, &open.user, input, credit, tx).await,
                StreamKind::Tunnel { host, port } => {
                    tracing::info!(session_id = %open.session_id, user = %open.user, %host, port, "tunnel connection");
                    tunnel::run(stream, &host, port, input, credit, tx).await;
                }
                StreamKind::Screen { control } => {
                    tracing::info!(session_id = %open.session_id, user = %open.user, control, "screen session opening");
                    screen::run(&config, stream, control, &open.user, input, credit, tx).await;
                }
                kind => files::run(&config, stream, kind, &open.user, input, credit, tx).await,
            }
        });
        None
    }

    /// Bytes from the server for a stream.
    pub fn data(&mut self, stream: u32, data: Bytes) -> Option<AgentMessage> {
        let handle = self.handles.get_mut(&stream)?;
        if handle.flow.receive(data.len()).is_err() {
            let reason = "the server sent more than the window";
            self.close(stream, reason.into());
            return Some(AgentMessage::StreamClosed { stream, reason: reason.into(), exit_code: None });
        }
        let _ = handle.input.send(Input::Data(data));
        None
    }

    pub fn resize(&self, stream: u32, cols: u16, rows: u16) {
        if let Some(handle) = self.handles.get(&stream)
            && streams::valid_size(cols, rows)
        {
            let _ = handle.input.send(Input::Resize(cols, rows));
        }
    }

    pub fn credit(&mut self, stream: u32, bytes: u32) {
        if let Some(handle) = self.handles.get_mut(&stream) {
            handle.credit.add_permits(handle.flow.credit(bytes) as usize);
        }
    }

    /// Ends a stream: its terminal is closed with `reason`, and its output thread stops
    /// waiting for credit that will not come.
    pub fn close(&mut self, stream: u32, reason: String) {
        if let Some(handle) = self.handles.remove(&stream) {
            let _ = handle.input.send(Input::Close(reason));
            handle.credit.close();
        }
    }

    /// Before sending: keeps the bookkeeping of what goes out (credit given, a stream ended).
    pub fn sending(&mut self, out: &Outgoing) {
        match out {
            Outgoing::Data(stream, bytes) => {
                // The output thread took the credit first, so this stays within the window.
                if let Some(handle) = self.handles.get_mut(stream) {
                    let _ = handle.flow.send(bytes.len());
                }
            }
            Outgoing::Message(AgentMessage::StreamCredit { stream, bytes }) => {
                if let Some(handle) = self.handles.get_mut(stream) {
                    handle.flow.pass_on(*bytes as usize);
                }
            }
            Outgoing::Message(
                AgentMessage::StreamClosed { stream, .. } | AgentMessage::StreamRefused { stream, .. },
            ) => {
                if let Some(handle) = self.handles.remove(stream) {
                    handle.credit.close();
                }
            }
            _ => {}
        }
    }

    /// The connection ended: every terminal is closed.
    fn end(&mut self) {
        let streams: Vec<u32> = self.handles.keys().copied().collect();
        for stream in streams {
            self.close(stream, "the connection to the server ended".into());
        }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        self.end();
    }
}

fn refused(stream: u32, reason: &str) -> AgentMessage {
    AgentMessage::StreamRefused { stream, reason: reason.to_owned() }
}

/// A name from the server as the hooks get it: letters, digits and `._@:+-` only (anything
/// else becomes `_`), at most 100 bytes. A token's name is free text, and a hook may hand its
/// arguments to an interpreter (`osascript -e`, Pango markup in `zenity`) that would obey it.
pub(crate) fn plain(name: &str) -> String {
    let ok = |c: char| c.is_ascii_alphanumeric() || "._@:+-".contains(c);
    name.chars().take(100).map(|c| if ok(c) { c } else { '_' }).collect()
}

/// Runs the consent hook, if any: `None` approves, `Some(reason)` refuses.
async fn consent(config: &RemoteConfig, open: &StreamOpen) -> Option<String> {
    let hook = config.consent_command.as_ref()?;
    let args: Vec<String> = hook
        .iter()
        .map(|a| a.replace("{user}", &plain(&open.user)).replace("{session}", &plain(&open.session_id)))
        .collect();
    let Some((program, rest)) = args.split_first() else {
        return Some(
            "`[remote] consent_command` is empty: name the program that asks for consent, or remove it".into(),
        );
    };
    let mut command = tokio::process::Command::new(program);
    command.args(rest).kill_on_drop(true).stdin(std::process::Stdio::null());
    match tokio::time::timeout(CONSENT_TIMEOUT, command.status()).await {
        Ok(Ok(status)) if status.success() => None,
        Ok(Ok(status)) => Some(format!("the person at the device declined (the consent hook exited with {status})")),
        Ok(Err(e)) => Some(format!("the consent hook could not run: {e}")),
        Err(_) => Some(format!("nobody at the device approved within {} s", CONSENT_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking() -> StreamOpen {
        let kind = StreamKind::Terminal { cols: 80, rows: 24, command: vec![] };
        StreamOpen { stream: 1, session_id: "s1".into(), user: "user:alice".into(), window: streams::WINDOW, kind }
    }

    #[tokio::test]
    async fn the_consent_hook_decides_and_an_empty_one_refuses_saying_so() {
        let hook = |argv: &[&str]| RemoteConfig {
            terminal: true,
            consent_command: Some(argv.iter().map(|a| a.to_string()).collect()),
            ..RemoteConfig::default()
        };
        assert_eq!(consent(&RemoteConfig::default(), &asking()).await, None, "no hook: no question");
        assert_eq!(consent(&hook(&["sh", "-c", "test \"$0\" = user:alice", "{user}"]), &asking()).await, None);
        let declined = consent(&hook(&["false"]), &asking()).await.expect("refused");
        assert!(declined.contains("declined"), "{declined}");
        let empty = consent(&hook(&[]), &asking()).await.expect("refused");
        assert!(empty.contains("consent_command` is empty"), "{empty}");
    }

    #[test]
    fn names_reach_the_hooks_without_anything_an_interpreter_would_obey() {
        assert_eq!(plain("token:ci-bot_2@site.example"), "token:ci-bot_2@site.example");
        assert_eq!(plain("token:x\" & (do shell script \"id\") & \""), "token:x_____do_shell_script__id______");
        assert_eq!(plain("user:<span size='1'>"), "user:_span_size__1__");
        assert_eq!(plain(&"a".repeat(500)).len(), 100);
    }
}
