//! Typing into a remote terminal, for `baton bench remote`: the [`Keyboard`] both sides
//! implement (Baton's attach WebSocket, an `ssh` client's pipes), and keystroke-to-echo timing.

use std::time::{Duration, Instant};

use anyhow::Context;

/// A terminal the bench types into: Baton's attach WebSocket or an `ssh` client's pipes.
pub trait Keyboard {
    async fn type_in(&mut self, bytes: &[u8]) -> anyhow::Result<()>;
    /// The next bytes the remote terminal printed.
    async fn output(&mut self) -> anyhow::Result<Vec<u8>>;
}

/// Longest wait for any echo or answer.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Waits until the output contains `needle`; what came before it is dropped.
pub async fn until(keys: &mut impl Keyboard, needle: &str) -> anyhow::Result<()> {
    let mut seen = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            seen.extend(keys.output().await?);
        }
        anyhow::Ok(())
    })
    .await
    .with_context(|| format!("the terminal did not print {needle:?} within {} s", PATIENCE.as_secs()))?
}

/// Types `n` keys one at a time, each after the last one's echo; the time of each.
pub async fn keystrokes(keys: &mut impl Keyboard, n: usize) -> anyhow::Result<Vec<Duration>> {
    // Quotes split the marker, so only the shell's output (not the echoed line) has it.
    keys.type_in(b"echo re\"\"ady\n").await?;
    until(keys, "ready").await?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        // A terminal's line holds 4,095 characters: Ctrl-U empties it now and then (its echo,
        // erasing the line, holds no letter, so it cannot be taken for the next key's).
        if i % 1_000 == 999 {
            keys.type_in(&[0x15]).await?;
        }
        let key = b'a' + (i % 26) as u8;
        let started = Instant::now();
        keys.type_in(&[key]).await?;
        tokio::time::timeout(PATIENCE, async {
            while !keys.output().await?.contains(&key) {}
            anyhow::Ok(())
        })
        .await
        .context("a keystroke was not echoed within 30 s")??;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples)
}
