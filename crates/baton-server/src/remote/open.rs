//! Asking a device's agent for a stream and waiting for its answer: the one place that turns
//! "offline", "not an agent", "refused" and "no answer" into words a person can act on, for the
//! terminal's relay and for the doors that stream logs and files.

use std::time::Duration;

use baton_proto::streams::StreamKind;
use tokio::{sync::oneshot, time::timeout};

use crate::connections::{DeviceStream, NoStream, Registry, StreamRequest};

/// How long the device has to accept or refuse a stream (its consent hook included).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a device did not open a stream; `reason()` says it in words.
#[derive(Debug)]
pub enum NotOpened {
    Offline,
    NotAnAgent,
    /// The device's session has too many requests waiting.
    Busy,
    /// The agent said no (the capability is off, a path is not allowed, too old an agent…).
    Refused(String),
    /// The device's connection ended before it answered.
    Gone,
    /// No answer within [`OPEN_TIMEOUT`].
    NoAnswer,
}

impl NotOpened {
    pub fn reason(&self) -> String {
        match self {
            NotOpened::Offline => "the device is offline".into(),
            NotOpened::NotAnAgent => {
                "the device is not connected through the agent; only agents open remote sessions".into()
            }
            NotOpened::Busy => "the device is busy opening other sessions; try again".into(),
            NotOpened::Refused(reason) => reason.clone(),
            NotOpened::Gone => "the device's connection ended".into(),
            NotOpened::NoAnswer => format!("the device did not answer within {} s", OPEN_TIMEOUT.as_secs()),
        }
    }
}

/// Asks `device_id`'s live agent connection for a stream of `kind` on behalf of `user`, and
/// waits (at most [`OPEN_TIMEOUT`]) for the device to open or refuse it.
pub async fn open_stream(
    connections: &Registry,
    device_id: &str,
    session_id: &str,
    user: &str,
    kind: StreamKind,
) -> Result<DeviceStream, NotOpened> {
    let (reply, answer) = oneshot::channel();
    let request = StreamRequest { session_id: session_id.to_owned(), user: user.to_owned(), kind, reply };
    match connections.open_stream(device_id, request) {
        Err(NoStream::Offline) => Err(NotOpened::Offline),
        Err(NoStream::NotAnAgent) => Err(NotOpened::NotAnAgent),
        Err(NoStream::Busy) => Err(NotOpened::Busy),
        Ok(()) => match timeout(OPEN_TIMEOUT, answer).await {
            Ok(Ok(Ok(stream))) => Ok(stream),
            Ok(Ok(Err(reason))) => Err(NotOpened::Refused(reason)),
            Ok(Err(_)) => Err(NotOpened::Gone),
            Err(_) => Err(NotOpened::NoAnswer),
        },
    }
}

/// At the HTTP edge: a refusal is the device's no (403); a busy device asks to retry (429);
/// the rest clash with the device's state (409).
impl From<NotOpened> for baton_core::Error {
    fn from(not: NotOpened) -> Self {
        match not {
            NotOpened::Refused(reason) => baton_core::Error::Forbidden(reason),
            NotOpened::Busy => baton_core::Error::RateLimited(1),
            other => baton_core::Error::Conflict(other.reason()),
        }
    }
}
