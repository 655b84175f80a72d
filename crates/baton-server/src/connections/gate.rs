//! Caps on open connections — per client address and in total, over every listener (HTTP,
//! WebSocket, MQTT) — so that no one source, and no flood, can use up the server's file
//! descriptors. A connection is *unproven* until it has sent a complete request (an HTTP
//! request's headers, MQTT's CONNECT); when the total is reached, a newcomer takes the place of
//! the oldest unproven connection, so slow and silent clients cannot lock out real ones while
//! they wait for their timeout. Proven connections (agents, terminals) are never pushed out.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fmt,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::Notify;

/// The limits, and who holds what.
pub struct ConnectionGate {
    per_source: u32,
    total: u32,
    state: Mutex<State>,
    /// Woken when connections are pushed out; each waiter looks whether it was one. Shared by
    /// all connections: a channel each cost every connection ≈ 0.5 KiB for its whole life, for
    /// an event that only ever happens at the total, to unproven connections.
    pushing: Notify,
}

#[derive(Default)]
struct State {
    /// Connections counted against the total.
    open: u32,
    by_source: HashMap<IpAddr, u32>,
    /// Unproven connections, oldest first.
    unproven: BTreeSet<u64>,
    /// Connections pushed out and not yet closed.
    pushed_out: HashSet<u64>,
    next: u64,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address holds this many connections already.
    Source(u32),
    /// The server holds this many, none of which may make room.
    Total(u32),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Source(n) => write!(f, "this address has {n} connections open, the most allowed"),
            Refusal::Total(n) => write!(f, "the server has {n} connections open, the most it takes"),
        }
    }
}

/// A connection let in; its place is given back when dropped.
pub struct Admitted {
    gate: Arc<ConnectionGate>,
    source: IpAddr,
    id: u64,
    /// Set once it has sent a request, so later requests skip the lock.
    proven: AtomicBool,
}

impl ConnectionGate {
    /// `total` is capped by the caller to what the open-file limit allows.
    pub fn new(per_source: u32, total: u32) -> Arc<Self> {
        Arc::new(Self {
            per_source: per_source.max(1),
            total: total.max(1),
            state: Mutex::new(State::default()),
            pushing: Notify::new(),
        })
    }

    /// Lets a connection from `source` in, or says why not.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Admitted, Refusal> {
        let source = bucket(source);
        let mut state = self.lock();
        let held = state.by_source.get(&source).copied().unwrap_or(0);
        if held >= self.per_source {
            return Err(Refusal::Source(held));
        }
        if state.open >= self.total {
            // The oldest connection that has not yet sent a request makes room.
            let Some(oldest) = state.unproven.pop_first() else { return Err(Refusal::Total(state.open)) };
            state.pushed_out.insert(oldest);
            self.pushing.notify_waiters();
            state.open -= 1;
            metrics::counter!("baton_connections_pushed_out_total").increment(1);
        }
        state.open += 1;
        *state.by_source.entry(source).or_insert(0) += 1;
        let id = state.next;
        state.next += 1;
        state.unproven.insert(id);
        metrics::gauge!("baton_connections_open").set(f64::from(state.open));
        Ok(Admitted { gate: self.clone(), source, id, proven: AtomicBool::new(false) })
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        self.lock().open
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Admitted {
    /// The connection has sent a complete request: from now on it keeps its place.
    pub fn proven(&self) {
        if self.proven.swap(true, Ordering::Relaxed) {
            return;
        }
        self.gate.lock().unproven.remove(&self.id);
    }

    /// Completes when a newcomer took this connection's place; never, once it is proven.
    pub async fn pushed_out(&self) {
        loop {
            // Registered before looking, so a push-out between the look and the wait is heard.
            let pushing = self.gate.pushing.notified();
            {
                let state = self.gate.lock();
                if state.pushed_out.contains(&self.id) {
                    return;
                }
                if !state.unproven.contains(&self.id) {
                    break;
                }
            }
            pushing.await;
        }
        std::future::pending::<()>().await;
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.unproven.remove(&self.id);
        // A connection pushed out gave its place in the total to the newcomer already.
        if !state.pushed_out.remove(&self.id) {
            state.open = state.open.saturating_sub(1);
        }
        if let Some(held) = state.by_source.get_mut(&self.source) {
            *held -= 1;
            if *held == 0 {
                state.by_source.remove(&self.source);
            }
        }
        metrics::gauge!("baton_connections_open").set(f64::from(state.open));
    }
}

/// The address a connection counts against: IPv4 as is (also when mapped into IPv6); IPv6 by
/// its /64, the block one subscriber usually holds.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn one_address_is_held_to_its_share() {
        let gate = ConnectionGate::new(2, 100);
        let _a = gate.admit(ip("10.0.0.1")).expect("first");
        let b = gate.admit(ip("10.0.0.1")).expect("second");
        assert_eq!(gate.admit(ip("10.0.0.1")).err(), Some(Refusal::Source(2)));
        let _c = gate.admit(ip("10.0.0.2")).expect("another address");
        drop(b);
        let _d = gate.admit(ip("10.0.0.1")).expect("a place came free");
        assert_eq!(gate.open(), 3);
    }

    #[test]
    fn ipv6_counts_by_its_64_block_and_mapped_ipv4_as_ipv4() {
        let gate = ConnectionGate::new(1, 100);
        let _a = gate.admit(ip("2001:db8:1:2::1")).expect("first");
        assert!(gate.admit(ip("2001:db8:1:2:ffff::9")).is_err(), "the same /64");
        let _b = gate.admit(ip("2001:db8:1:3::1")).expect("another /64");
        let _c = gate.admit(ip("192.0.2.7")).expect("v4");
        assert!(gate.admit(ip("::ffff:192.0.2.7")).is_err(), "the same address, mapped");
    }

    #[tokio::test]
    async fn a_proven_connection_is_never_pushed_out() {
        let gate = ConnectionGate::new(10, 10);
        let proven = gate.admit(ip("10.0.0.1")).expect("admitted");
        proven.proven();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), proven.pushed_out()).await;
        assert!(waited.is_err(), "still waiting");
    }

    #[tokio::test]
    async fn at_the_total_a_newcomer_takes_the_place_of_the_oldest_unproven_connection() {
        let gate = ConnectionGate::new(10, 2);
        let old = gate.admit(ip("10.0.0.1")).expect("old");
        let proven = gate.admit(ip("10.0.0.2")).expect("proven");
        proven.proven();
        let new = gate.admit(ip("10.0.0.3")).expect("pushes the unproven one out");
        old.pushed_out().await;
        assert_eq!(gate.open(), 2);
        drop(old);
        assert_eq!(gate.open(), 2, "its place went to the newcomer, not back to the pool");
        new.proven();
        assert_eq!(gate.admit(ip("10.0.0.4")).err(), Some(Refusal::Total(2)), "proven ones stay");
        drop(new);
        assert_eq!(gate.open(), 1);
        let _again = gate.admit(ip("10.0.0.1")).expect("room again");
    }
}
