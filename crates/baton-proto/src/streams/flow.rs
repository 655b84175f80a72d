//! One stream's flow control, kept alike at both ends and without I/O: the bytes the peer sent
//! that this end has not passed on (bounded by the window this end granted) and the bytes this
//! end sent that the peer has not credited back (bounded by the window the peer granted). The
//! server's and the agent's stream tables each keep one [`Flow`] per stream and move their
//! semaphores by what it returns, so a credit never adds more than was sent, and a peer that
//! sends past its window is caught the same way on both sides.

use super::{MAX_CHUNK, MAX_WINDOW};

/// A stream's flow control at one end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The window this end granted: what the peer may have sent and not had credited.
    granted: u32,
    /// Bytes the peer sent that this end has not passed on yet; never above `granted`.
    unread: u32,
    /// The window the peer granted this end.
    window: u32,
    /// Bytes this end sent that the peer has not credited back yet; never above `window`.
    in_flight: u32,
}

/// More bytes than the window allows: the stream ends (from the peer, it broke the protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overrun;

impl Flow {
    /// A new stream: this end grants `granted`, the peer granted `window`. Both are read within
    /// [`MAX_CHUNK`]..=[`MAX_WINDOW`], so one chunk always fits and no peer can make the other
    /// end hold more than [`MAX_WINDOW`].
    pub fn new(granted: u32, window: u32) -> Self {
        let bound = |w: u32| w.clamp(MAX_CHUNK as u32, MAX_WINDOW);
        Flow { granted: bound(granted), unread: 0, window: bound(window), in_flight: 0 }
    }

    /// `len` bytes arrived from the peer. Past the granted window nothing is counted.
    pub fn receive(&mut self, len: usize) -> Result<(), Overrun> {
        add_within(&mut self.unread, len, self.granted)
    }

    /// This end passed `len` received bytes on: the credit to hand the peer (never more than
    /// was unread).
    pub fn pass_on(&mut self, len: usize) -> u32 {
        let credit = u32::try_from(len).unwrap_or(u32::MAX).min(self.unread);
        self.unread -= credit;
        credit
    }

    /// This end sends `len` bytes; past the peer's window nothing is counted. Senders wait for
    /// credit first, so this fails only if a caller skipped that.
    pub fn send(&mut self, len: usize) -> Result<(), Overrun> {
        add_within(&mut self.in_flight, len, self.window)
    }

    /// The peer credited `bytes`: how many this end may send again. Never more than is in
    /// flight, so a peer crediting too much cannot raise the window it granted.
    pub fn credit(&mut self, bytes: u32) -> u32 {
        let credit = bytes.min(self.in_flight);
        self.in_flight -= credit;
        credit
    }

    /// Bytes received and not passed on yet.
    pub fn unread(&self) -> u32 {
        self.unread
    }

    /// Bytes sent and not credited yet.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// The window this end granted (as read, within bounds).
    pub fn granted(&self) -> u32 {
        self.granted
    }

    /// The window the peer granted (as read, within bounds): the sender's starting credit.
    pub fn window(&self) -> u32 {
        self.window
    }
}

/// Adds `len` to `count` if the sum stays within `bound`; otherwise changes nothing.
fn add_within(count: &mut u32, len: usize, bound: u32) -> Result<(), Overrun> {
    let sum = u32::try_from(len).ok().and_then(|len| count.checked_add(len)).filter(|&sum| sum <= bound);
    *count = sum.ok_or(Overrun)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::WINDOW;

    #[test]
    fn a_peer_may_send_up_to_the_window_and_not_a_byte_more() {
        let mut flow = Flow::new(WINDOW, WINDOW);
        assert_eq!(flow.receive(WINDOW as usize - 1), Ok(()));
        assert_eq!(flow.receive(2), Err(Overrun));
        assert_eq!(flow.unread(), WINDOW - 1, "an overrun counts nothing");
        assert_eq!(flow.pass_on(10), 10);
        assert_eq!(flow.receive(10), Ok(()));
        assert_eq!(flow.pass_on(usize::MAX), WINDOW - 1, "credit is never more than was unread");
        assert_eq!(flow.unread(), 0);
    }

    #[test]
    fn a_credit_returns_at_most_what_was_sent() {
        let mut flow = Flow::new(WINDOW, WINDOW);
        assert_eq!(flow.send(100), Ok(()));
        assert_eq!(flow.credit(u32::MAX), 100);
        assert_eq!(flow.credit(1), 0, "nothing is in flight");
        assert_eq!(flow.send(WINDOW as usize), Ok(()));
        assert_eq!(flow.send(1), Err(Overrun));
    }

    #[test]
    fn windows_are_read_within_one_chunk_and_the_largest_window() {
        let flow = Flow::new(0, u32::MAX);
        assert_eq!((flow.granted(), flow.window()), (MAX_CHUNK as u32, MAX_WINDOW));
    }
}
