//! File transfers relayed between an HTTP body and a device's file stream, for the doors that
//! serve them: a download's bytes become a response body that hands the device credit back
//! only for what the body passed on (so a slow client slows the device, and the server holds at
//! most one window); an upload's body goes to the device within its credit, a frame at a time,
//! never buffered whole. Each transfer's event is recorded when it ends, cut or complete
//! ([`Ledger`]).

use std::time::Duration;

use baton_core::{
    access::TenantScope,
    bus::SharedBus,
    remote::files::{self, Direction, Transfer},
    store::Db,
};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::connections::{DeviceStream, streams::StreamOutput};

/// Bytes passed on before the device is credited for them.
const CREDIT_BATCH: usize = baton_proto::streams::CREDIT_BATCH as usize;

/// How long the device has to check and move an upload into place once all bytes arrived.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(600);

/// A transfer's event, recorded once: by [`Ledger::finish`], or when dropped unfinished (the
/// client went away mid-way).
pub struct Ledger {
    db: Db,
    bus: SharedBus,
    scope: TenantScope,
    direction: Direction,
    pub transfer: Transfer,
    done: bool,
}

impl Ledger {
    pub fn new(db: Db, bus: SharedBus, scope: TenantScope, direction: Direction, transfer: Transfer) -> Self {
        Ledger { db, bus, scope, direction, transfer, done: false }
    }

    /// Records the event with how the transfer ended.
    pub fn finish(mut self, complete: bool, reason: impl Into<String>) {
        self.record(complete, reason.into());
    }

    fn record(&mut self, complete: bool, reason: String) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.transfer.complete = complete;
        self.transfer.reason = reason;
        let (db, bus, scope, direction, transfer) =
            (self.db.clone(), self.bus.clone(), self.scope.clone(), self.direction, self.transfer.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { files::record(&db, &bus, &scope, direction, &transfer).await });
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.record(false, "the client went away".into());
    }
}

/// What a download's body does with the device's stream.
pub struct Download {
    pub stream: DeviceStream,
    /// Stop after this many bytes (a bounded range), closing the stream.
    pub stop_at: Option<u64>,
    /// The bytes the device should send in all (a file from its offset); checked at the end.
    pub expect: Option<u64>,
    /// At most this many bytes in all (a directory's tar stream has no size up front).
    pub limit: u64,
    pub ledger: Ledger,
}

/// The device's bytes as a response body. Credit goes back for a chunk when the next is asked
/// for, i.e. once the body has handed it on. A stream that ends short fails the body, so the
/// client sees a cut transfer, never a short file passed off as whole.
pub fn body(download: Download) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let state = Some(Body { d: download, passed: 0, sent: 0 });
    futures::stream::unfold(state, |state| async move {
        let mut body = state?;
        match body.next().await {
            Ok(Some(bytes)) => Some((Ok(bytes), Some(body))),
            Ok(None) => None,
            Err(reason) => Some((Err(std::io::Error::other(reason)), None)),
        }
    })
}

struct Body {
    d: Download,
    /// Bytes passed on and not yet credited back.
    passed: usize,
    sent: u64,
}

impl Body {
    async fn next(&mut self) -> Result<Option<Bytes>, String> {
        // Credit goes back in batches: one message per chunk would be one frame per 16 KiB.
        // Holding back less than a quarter of the window never stalls the device.
        if self.passed >= CREDIT_BATCH {
            let _ = self.d.stream.to_device.consumed(std::mem::take(&mut self.passed)).await;
        }
        if self.d.ledger.done {
            return Ok(None);
        }
        match self.d.stream.from_device.recv().await {
            Some(StreamOutput::Data(mut bytes)) => {
                self.passed += bytes.len();
                if let Some(stop) = self.d.stop_at {
                    bytes.truncate(usize::try_from(stop - self.sent).unwrap_or(usize::MAX).min(bytes.len()));
                }
                self.sent += bytes.len() as u64;
                self.d.ledger.transfer.bytes = self.sent;
                let most = self.d.limit.min(self.d.expect.unwrap_or(u64::MAX));
                if self.sent > most {
                    return Err(self.end(false, &format!("more than {most} bytes came from the device")));
                }
                if self.d.stop_at.is_some_and(|stop| self.sent >= stop) {
                    self.end(true, "sent the range asked for");
                } else if self.d.expect == Some(self.sent) {
                    // The last bytes go out once the device confirmed the file did not change
                    // while it was read: a client never takes a torn file for a whole one.
                    self.last_word().await?;
                }
                Ok(Some(bytes))
            }
            Some(StreamOutput::Closed { exit_code: Some(0), .. }) if self.d.expect.is_none_or(|e| e == self.sent) => {
                self.end(true, "sent");
                Ok(None)
            }
            Some(StreamOutput::Closed { exit_code: Some(0), .. }) => {
                let reason = format!("the device ended after {} of {} bytes", self.sent, self.d.expect.unwrap_or(0));
                Err(self.end(false, &reason))
            }
            Some(StreamOutput::Closed { reason, .. }) => Err(self.end(false, &reason)),
            None => Err(self.end(false, "the device's connection ended")),
        }
    }

    /// Every byte came: the device's closing word decides whether the transfer is whole.
    async fn last_word(&mut self) -> Result<(), String> {
        match self.d.stream.from_device.recv().await {
            Some(StreamOutput::Closed { exit_code: Some(0), .. }) => {
                self.end(true, "sent");
                Ok(())
            }
            Some(StreamOutput::Closed { reason, .. }) => Err(self.end(false, &reason)),
            Some(StreamOutput::Data(_)) => Err(self.end(false, "the device sent more than the file's size")),
            None => Err(self.end(false, "the device's connection ended")),
        }
    }

    /// Records the end; the reason, for the body's error.
    fn end(&mut self, complete: bool, reason: &str) -> String {
        self.d.ledger.record(complete, reason.to_owned());
        reason.to_owned()
    }
}

/// How an upload ended.
#[derive(Debug)]
pub enum Uploaded {
    /// In place on the device.
    Written,
    /// All bytes came, and the device found another SHA-256 (its words).
    Mismatch(String),
    /// The body ended (or was cut) after `sent` of the bytes expected: the device keeps them.
    Short { sent: u64 },
    /// The body had more bytes than `size - offset`.
    TooLong,
    /// The device ended the stream, or its connection ended (the reason).
    Failed(String),
}

/// Sends `body` (`expected` bytes) to the device within its credit, then waits for the
/// device's word that the file is in place. `sent` counts what went out.
pub async fn upload<S, E>(stream: DeviceStream, mut body: S, expected: u64, sent: &mut u64) -> Uploaded
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let DeviceStream { to_device, mut from_device, .. } = stream;
    let ended = |out: Option<StreamOutput>| match out {
        Some(StreamOutput::Closed { reason, .. }) => Uploaded::Failed(reason),
        _ => Uploaded::Failed("the device's connection ended".into()),
    };
    loop {
        let frame = tokio::select! {
            frame = body.next() => frame,
            out = from_device.recv() => return ended(out),
        };
        let mut data = match frame {
            Some(Ok(data)) => data,
            Some(Err(_)) | None => break,
        };
        if *sent + data.len() as u64 > expected {
            to_device.close("the upload had more bytes than its size").await;
            return Uploaded::TooLong;
        }
        while !data.is_empty() {
            let before = data.len();
            tokio::select! {
                r = to_device.send_chunk(&mut data) => if r.is_err() { return ended(None) },
                out = from_device.recv() => return ended(out),
            }
            *sent += (before - data.len()) as u64;
        }
    }
    if *sent < expected {
        to_device.close(format!("the upload ended after {sent} of {expected} bytes; kept for a resume")).await;
        return Uploaded::Short { sent: *sent };
    }
    match tokio::time::timeout(VERDICT_TIMEOUT, from_device.recv()).await {
        Ok(Some(StreamOutput::Closed { exit_code: Some(0), .. })) => Uploaded::Written,
        Ok(Some(StreamOutput::Closed { exit_code: Some(1), reason })) => Uploaded::Mismatch(reason),
        Ok(out @ (Some(StreamOutput::Closed { .. }) | None)) => ended(out),
        Ok(Some(StreamOutput::Data(_))) => Uploaded::Failed("the device sent bytes on an upload".into()),
        Err(_) => {
            Uploaded::Failed(format!("the device did not confirm the file within {} s", VERDICT_TIMEOUT.as_secs()))
        }
    }
}
