//! How the registry wakes one session: a delivery hint ("commands may be waiting") and a
//! control cell (decommissioned, replaced), both in one small allocation shared by the registry
//! entry and the session. Two channels per session did the same at ≈ 1 KiB each (a channel's
//! shared state is cache-padded, and its first block of slots is made with it); every idle
//! connection paid for them. Only the first control told counts — the session ends on it —
//! so one slot is all a control needs.

use std::{
    future::poll_fn,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use super::Control;

/// What the registry and the session share: one lock over the state and the wakers of the
/// session's two ends. A session waits by leaving its waker here, so its waiting state holds
/// nothing for either signal (a `Notify`'s waiter lived in every idle session's task).
#[derive(Default)]
struct Shared(Mutex<Cell>);

#[derive(Default)]
struct Cell {
    /// A hint is waiting (a stored permit), as a one-slot channel kept it.
    hint: bool,
    control: Option<Control>,
    /// The registry let go of the session (replaced, or unregistered).
    closed: bool,
    hint_waker: Option<Waker>,
    control_waker: Option<Waker>,
}

impl Shared {
    fn cell(&self) -> MutexGuard<'_, Cell> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Leaves `cx`'s waker in `slot`, unless the one there wakes the same task.
fn wait_in(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// The registry's end; dropping it closes both signals, as dropping a channel's sender did.
pub(super) struct Signals(Arc<Shared>);

/// The session's end of its delivery hints.
pub struct Hints(Arc<Shared>);

/// The session's end of its control cell.
pub struct Controls(Arc<Shared>);

/// A session's signals: the registry's end and the session's two.
pub(super) fn signals() -> (Signals, Hints, Controls) {
    let shared = Arc::new(Shared::default());
    (Signals(shared.clone()), Hints(shared.clone()), Controls(shared))
}

impl Signals {
    /// Says "look again"; hints given while one waits are one hint.
    pub(super) fn hint(&self) {
        let mut cell = self.0.cell();
        cell.hint = true;
        let waker = cell.hint_waker.take();
        drop(cell);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Tells the session `control`, unless it was told one already (that one ends it).
    pub(super) fn tell(&self, control: Control) {
        let mut cell = self.0.cell();
        if cell.control.is_none() && !cell.closed {
            cell.control = Some(control);
            let waker = cell.control_waker.take();
            drop(cell);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        let mut cell = self.0.cell();
        cell.closed = true;
        let wakers = [cell.hint_waker.take(), cell.control_waker.take()];
        drop(cell);
        wakers.into_iter().flatten().for_each(Waker::wake);
    }
}

impl Hints {
    /// The next hint; `None` once the registry let go of the session. Cancel-safe.
    pub async fn recv(&mut self) -> Option<()> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&self, cx: &Context<'_>) -> Poll<Option<()>> {
        let mut cell = self.0.cell();
        if cell.closed {
            Poll::Ready(None)
        } else if std::mem::take(&mut cell.hint) {
            Poll::Ready(Some(()))
        } else {
            wait_in(&mut cell.hint_waker, cx);
            Poll::Pending
        }
    }
}

impl Controls {
    /// The control told, once; `None` once the registry let go of the session without one.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Control> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&self, cx: &Context<'_>) -> Poll<Option<Control>> {
        let mut cell = self.0.cell();
        if let Some(control) = cell.control.take() {
            Poll::Ready(Some(control))
        } else if cell.closed {
            Poll::Ready(None)
        } else {
            wait_in(&mut cell.control_waker, cx);
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hints_given_while_one_waits_are_one_hint() {
        let (signals, mut hints, _controls) = signals();
        signals.hint();
        signals.hint();
        assert_eq!(hints.recv().await, Some(()));
        let again = tokio::time::timeout(std::time::Duration::from_millis(20), hints.recv()).await;
        assert!(again.is_err(), "a second hint was kept");
    }

    #[tokio::test]
    async fn the_first_control_told_is_the_one_received() {
        let (signals, _hints, mut controls) = signals();
        signals.tell(Control::Decommission { wipe: true });
        signals.tell(Control::Replaced);
        assert!(matches!(controls.recv().await, Some(Control::Decommission { wipe: true })));
    }

    #[tokio::test]
    async fn a_session_let_go_hears_so_after_what_it_was_told() {
        let (signals, mut hints, mut controls) = signals();
        signals.tell(Control::Replaced);
        drop(signals);
        assert!(matches!(controls.recv().await, Some(Control::Replaced)));
        assert!(controls.recv().await.is_none());
        assert!(hints.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_session_wakes_when_told() {
        let (signals, _hints, mut controls) = signals();
        let waiting = tokio::spawn(async move { controls.recv().await });
        tokio::task::yield_now().await;
        signals.tell(Control::Replaced);
        assert!(matches!(waiting.await.expect("joined"), Some(Control::Replaced)));
    }
}
