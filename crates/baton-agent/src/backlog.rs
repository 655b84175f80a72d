//! The telemetry backlog shared by the sampler (which adds batches whether or not the agent is
//! connected) and the connection (which sends them and drops them once acknowledged). Bounded:
//! beyond `max_batches` the oldest are dropped, so a device offline for weeks keeps its most
//! recent history without filling its disk. Every change is persisted before it counts.

use std::{collections::BTreeMap, sync::Arc};

use baton_proto::agent::{Sample, TelemetryBatch};
use tokio::sync::{Mutex, Notify};

use crate::{
    AgentError,
    storage::{Backlog, Storage},
};

#[derive(Clone)]
pub struct SharedBacklog {
    inner: Arc<Mutex<Backlog>>,
    storage: Storage,
    max_batches: usize,
    /// Wakes the connection when a batch is added.
    pub added: Arc<Notify>,
}

/// Longest metric name the server accepts, in bytes.
const MAX_NAME_BYTES: usize = 128;

impl SharedBacklog {
    pub fn load(storage: Storage, max_batches: usize) -> Result<Self, AgentError> {
        let backlog = storage.load_backlog()?;
        Ok(Self {
            inner: Arc::new(Mutex::new(backlog)),
            storage,
            max_batches: max_batches.max(1),
            added: Arc::new(Notify::new()),
        })
    }

    /// Names this backlog's numbering (see `Backlog::epoch`).
    pub async fn epoch(&self) -> u64 {
        self.inner.lock().await.epoch
    }

    /// Adds one sample as a new batch, durably. Values the server would refuse (not finite,
    /// bad names) are left out here, so one odd sensor cannot hold up the rest.
    pub async fn push(&self, ts: i64, mut metrics: BTreeMap<String, f64>) -> Result<(), AgentError> {
        metrics.retain(|name, value| {
            value.is_finite() && !name.is_empty() && name.len() <= MAX_NAME_BYTES && !name.chars().any(char::is_control)
        });
        if metrics.is_empty() {
            return Ok(());
        }
        let mut backlog = self.inner.lock().await;
        let seq = backlog.next_seq;
        backlog.next_seq += 1;
        let batch = TelemetryBatch { seq, samples: vec![Sample { ts, metrics }] };
        backlog.batches.push_back(batch.clone());
        self.storage.append_batch(&batch, &backlog)?;
        let mut dropped = None;
        while backlog.batches.len() > self.max_batches {
            dropped = backlog.batches.pop_front().map(|b| b.seq);
        }
        if let Some(seq) = dropped {
            self.storage.append_done(seq, &backlog)?;
        }
        drop(backlog);
        self.added.notify_one();
        Ok(())
    }

    /// Batches after `after` (all when `None`), oldest first, at most `limit`.
    pub async fn since(&self, after: Option<u64>, limit: usize) -> Vec<TelemetryBatch> {
        let backlog = self.inner.lock().await;
        backlog.batches.iter().filter(|b| after.is_none_or(|a| b.seq > a)).take(limit).cloned().collect()
    }

    /// Drops batches up to and including `seq`: the server has stored them.
    pub async fn ack(&self, seq: u64) -> Result<(), AgentError> {
        let mut backlog = self.inner.lock().await;
        let before = backlog.batches.len();
        backlog.batches.retain(|b| b.seq > seq);
        if backlog.batches.len() != before {
            self.storage.append_done(seq, &backlog)?;
        }
        Ok(())
    }

    pub async fn len(&self) -> usize {
        self.inner.lock().await.batches.len()
    }

    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(v: f64) -> BTreeMap<String, f64> {
        BTreeMap::from([("cpu.usage_pct".to_owned(), v)])
    }

    #[tokio::test]
    async fn batches_survive_a_restart_until_acknowledged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backlog = SharedBacklog::load(Storage::disk(dir.path()).expect("storage"), 100).expect("load");
        for i in 0..3 {
            backlog.push(1_000 + i, metric(i as f64)).await.expect("push");
        }
        backlog.ack(0).await.expect("ack");
        let reloaded = SharedBacklog::load(Storage::disk(dir.path()).expect("storage"), 100).expect("reload");
        let seqs: Vec<u64> = reloaded.since(None, 100).await.iter().map(|b| b.seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(reloaded.epoch().await, backlog.epoch().await, "the same numbering");
        reloaded.push(2_000, metric(9.0)).await.expect("push");
        assert_eq!(reloaded.since(Some(2), 100).await[0].seq, 3, "numbering continues after a restart");
    }

    #[tokio::test]
    async fn the_oldest_batches_go_first_when_the_bound_is_reached() {
        let backlog = SharedBacklog::load(Storage::memory(), 2).expect("load");
        for i in 0..5 {
            backlog.push(i, metric(1.0)).await.expect("push");
        }
        let seqs: Vec<u64> = backlog.since(None, 100).await.iter().map(|b| b.seq).collect();
        assert_eq!(seqs, [3, 4]);
    }

    #[tokio::test]
    async fn a_torn_last_line_is_ignored_and_values_the_server_refuses_are_left_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backlog = SharedBacklog::load(Storage::disk(dir.path()).expect("storage"), 100).expect("load");
        let mut odd = metric(1.0);
        odd.insert("bad".into(), f64::NAN);
        odd.insert("é".repeat(100), 1.0);
        backlog.push(1, odd).await.expect("push");
        backlog.push(2, BTreeMap::from([("x".to_owned(), f64::INFINITY)])).await.expect("nothing left: no batch");
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("telemetry-backlog.jsonl"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"batch\":{\"seq\":9,"))
            .expect("torn line");
        let reloaded = SharedBacklog::load(Storage::disk(dir.path()).expect("storage"), 100).expect("reload");
        let batches = reloaded.since(None, 100).await;
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].samples[0].metrics.keys().collect::<Vec<_>>(), ["cpu.usage_pct"]);
    }

    #[tokio::test]
    async fn a_lost_backlog_starts_a_new_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = SharedBacklog::load(Storage::disk(dir.path()).expect("storage"), 100).expect("load");
        std::fs::remove_file(dir.path().join("telemetry-backlog.jsonl")).expect("lost");
        let second = SharedBacklog::load(Storage::disk(dir.path()).expect("storage"), 100).expect("load");
        assert_ne!(first.epoch().await, second.epoch().await);
    }
}
