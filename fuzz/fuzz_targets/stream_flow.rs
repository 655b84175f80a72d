//! Flow control on a stream, as both ends keep it (`baton_proto::streams::Flow`), under any
//! order of events. The first byte picks the game:
//! - even: two honest ends (the server and the agent) send, receive, pass on and credit in any
//!   interleaving over two ordered wires. Neither overruns the other's window; bytes are
//!   conserved (what one end has in flight is on the wire, unread at the other end, or on its
//!   way back as credit); once everything is delivered and passed on, both have their whole
//!   window of credit back.
//! - odd: one end and a peer that sends anything. An overrun counts nothing; unread never
//!   passes the window granted, in flight never the window received; credit never returns
//!   more than was sent.
#![no_main]

use std::collections::VecDeque;

use baton_proto::streams::{Flow, MAX_CHUNK, WINDOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&game, ops)) = data.split_first() else { return };
    if game % 2 == 0 {
        honest(ops);
    } else {
        rogue(ops);
    }
});

#[derive(Clone, Copy)]
enum Wire {
    Data(u32),
    Credit(u32),
}

/// One end: its account, the credit its sender may still take, what travels to the other end.
struct End {
    flow: Flow,
    permits: u32,
    outbound: VecDeque<Wire>,
}

impl End {
    fn new(granted: u32, window: u32) -> Self {
        let flow = Flow::new(granted, window);
        End { permits: flow.window(), flow, outbound: VecDeque::new() }
    }

    /// The sender takes credit for up to `want` bytes (one chunk at most) and sends them.
    fn write(&mut self, want: u32) {
        let len = want.min(self.permits).min(MAX_CHUNK as u32);
        if len > 0 {
            self.permits -= len;
            self.flow.send(len as usize).expect("a sender within its credit stays within the window");
            self.outbound.push_back(Wire::Data(len));
        }
    }

    /// The reader passes bytes on and credits them back.
    fn pass_on(&mut self, len: u32) {
        let credit = self.flow.pass_on(len as usize);
        if credit > 0 {
            self.outbound.push_back(Wire::Credit(credit));
        }
    }

    fn hear(&mut self, wire: Wire) {
        match wire {
            Wire::Data(len) => self.flow.receive(len as usize).expect("an honest peer never overruns"),
            Wire::Credit(bytes) => {
                self.permits += self.flow.credit(bytes);
                assert!(self.permits <= self.flow.window());
            }
        }
    }
}

fn deliver(from: &mut End, to: &mut End) -> bool {
    let Some(wire) = from.outbound.pop_front() else { return false };
    to.hear(wire);
    true
}

/// What `from` has in flight is on the wire, unread at `to`, or credit on its way back.
fn conserved(from: &End, to: &End) {
    let data: u32 = from.outbound.iter().map(|w| if let Wire::Data(n) = w { *n } else { 0 }).sum();
    let credit: u32 = to.outbound.iter().map(|w| if let Wire::Credit(n) = w { *n } else { 0 }).sum();
    assert_eq!(from.flow.in_flight(), data + to.flow.unread() + credit);
    assert_eq!(from.permits + from.flow.in_flight(), from.flow.window());
    assert!(to.flow.unread() <= to.flow.granted());
}

fn honest(ops: &[u8]) {
    // The windows each end grants: the default, or any other.
    let Some((head, ops)) = ops.split_first_chunk::<4>() else { return };
    let window = |b: [u8; 2]| match u16::from_be_bytes(b) {
        0 => WINDOW,
        n => u32::from(n) * 32,
    };
    let (to_server, to_agent) = (window([head[0], head[1]]), window([head[2], head[3]]));
    let (mut server, mut agent) = (End::new(to_server, to_agent), End::new(to_agent, to_server));
    for op in ops.chunks_exact(3) {
        let amount = u32::from(u16::from_be_bytes([op[1], op[2]])) * 8;
        match op[0] % 6 {
            0 => server.write(amount),
            1 => agent.write(amount),
            2 => {
                deliver(&mut server, &mut agent);
            }
            3 => {
                deliver(&mut agent, &mut server);
            }
            4 => server.pass_on(amount),
            _ => agent.pass_on(amount),
        }
        conserved(&server, &agent);
        conserved(&agent, &server);
    }
    // Quiet: everything delivered and passed on, every credit home.
    loop {
        let moved = deliver(&mut server, &mut agent) | deliver(&mut agent, &mut server);
        server.pass_on(u32::MAX);
        agent.pass_on(u32::MAX);
        if !moved && server.outbound.is_empty() && agent.outbound.is_empty() {
            break;
        }
    }
    for end in [&server, &agent] {
        assert_eq!((end.flow.in_flight(), end.flow.unread()), (0, 0));
        assert_eq!(end.permits, end.flow.window(), "credit leaked");
    }
}

fn rogue(ops: &[u8]) {
    let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let Some((head, ops)) = ops.split_first_chunk::<8>() else { return };
    let mut flow = Flow::new(word(&head[..4]), word(&head[4..]));
    for op in ops.chunks_exact(5) {
        let n = word(&op[1..]);
        let before = flow.clone();
        match op[0] % 4 {
            0 => {
                if flow.receive(n as usize).is_err() {
                    assert_eq!(flow, before, "an overrun counts nothing");
                }
            }
            1 => assert!(flow.pass_on(n as usize) <= before.unread()),
            2 => {
                if flow.send(n as usize).is_err() {
                    assert_eq!(flow, before);
                }
            }
            _ => assert!(flow.credit(n) <= before.in_flight()),
        }
        assert!(flow.unread() <= flow.granted() && flow.in_flight() <= flow.window());
    }
}
