//! The local terminal while `baton terminal` is attached: raw mode that is restored on every way
//! out (a guard's `Drop` for returns and errors, a panic hook for panics; the signals that end
//! the session are caught by [`stop_signal`] so the guard runs for them too), the window size,
//! and its changes (SIGWINCH).

use std::sync::Once;

use anyhow::Context;

/// Raw mode on the terminal, until dropped: every key (Ctrl-C, Ctrl-Z and Ctrl-\ included) is a
/// byte for the device, and nothing is echoed locally — the device's terminal echoes.
pub struct RawMode(());

impl RawMode {
    pub fn enable() -> anyhow::Result<Self> {
        restore_on_panic();
        crossterm::terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        Ok(RawMode(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts back the mode the terminal had before raw mode (nothing when it is not in raw mode).
fn restore() {
    let _ = crossterm::terminal::disable_raw_mode();
}

/// A panic unwinds past the guard only if nothing else stops it, and its message should be
/// readable: the hook restores the terminal first, then reports the panic as before.
fn restore_on_panic() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// The terminal's size in cells (columns, rows), within what the server accepts; `None` when
/// neither stdin nor stdout is a terminal.
pub fn size() -> Option<(u16, u16)> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() && !std::io::stdout().is_terminal() {
        return None;
    }
    let (cols, rows) = crossterm::terminal::size().ok()?;
    (cols > 0 && rows > 0).then(|| (cols.min(1000), rows.min(1000)))
}

/// Completes with the signal's number when one that ends the session comes: SIGINT (only sent
/// by the terminal when it is not in raw mode, or by `kill`), SIGTERM, SIGHUP (the terminal
/// went away). Installed when called, so none is missed from then on.
pub fn stop_signal() -> anyhow::Result<impl Future<Output = i32> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => 2,
                _ = terminate.recv() => 15,
                _ = hangup.recv() => 1,
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            2
        })
    }
}

/// What a signal from [`stop_signal`] is called.
pub fn signal_name(number: i32) -> &'static str {
    match number {
        1 => "SIGHUP",
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

/// Calls `changed` with the new size each time the window changes size (SIGWINCH).
#[cfg(unix)]
pub fn follow_resizes(mut changed: impl FnMut(u16, u16) -> bool + Send + 'static) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut winch = signal(SignalKind::window_change())?;
    tokio::spawn(async move {
        let mut last = size();
        while winch.recv().await.is_some() {
            let now = size();
            if now != last
                && let Some((cols, rows)) = now
                && !changed(cols, rows)
            {
                return;
            }
            last = now;
        }
    });
    Ok(())
}

/// Windows has no SIGWINCH: the size stays what it was at the start.
#[cfg(not(unix))]
pub fn follow_resizes(_changed: impl FnMut(u16, u16) -> bool + Send + 'static) -> anyhow::Result<()> {
    Ok(())
}
