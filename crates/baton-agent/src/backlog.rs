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

impl SharedBacklog {
    pub fn load(storage: Storage, max_batches: usize) -> Result<Self, AgentError> {
        let backlog = storage.backlog()?;
        Ok(Self {
            inner: Arc::new(Mutex::new(backlog)),
            storage,
            max_batches: max_batches.max(1),
            added: Arc::new(Notify::new()),
        })
    }

    /// Adds one sample as a new batch and persists the backlog.
    pub async fn push(&self, ts: i64, metrics: BTreeMap<String, f64>) -> Result<(), AgentError> {
        if metrics.is_empty() {
            return Ok(());
        }
        let mut backlog = self.inner.lock().await;
        let seq = backlog.next_seq;
        backlog.next_seq += 1;
        backlog.batches.push_back(TelemetryBatch { seq, samples: vec![Sample { ts, metrics }] });
        while backlog.batches.len() > self.max_batches {
            backlog.batches.pop_front();
        }
        self.storage.save_backlog(&backlog)?;
        drop(backlog);
        self.added.notify_one();
        Ok(())
    }

    /// Batches after `after` (all when `None`), oldest first.
    pub async fn since(&self, after: Option<u64>) -> Vec<TelemetryBatch> {
        let backlog = self.inner.lock().await;
        backlog.batches.iter().filter(|b| after.is_none_or(|a| b.seq > a)).cloned().collect()
    }

    /// Drops batches up to and including `seq`: the server has stored them.
    pub async fn ack(&self, seq: u64) -> Result<(), AgentError> {
        let mut backlog = self.inner.lock().await;
        let before = backlog.batches.len();
        backlog.batches.retain(|b| b.seq > seq);
        if backlog.batches.len() != before {
            self.storage.save_backlog(&backlog)?;
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
        let seqs: Vec<u64> = reloaded.since(None).await.iter().map(|b| b.seq).collect();
        assert_eq!(seqs, [1, 2]);
        reloaded.push(2_000, metric(9.0)).await.expect("push");
        assert_eq!(reloaded.since(Some(2)).await[0].seq, 3, "numbering continues after a restart");
    }

    #[tokio::test]
    async fn the_oldest_batches_go_first_when_the_bound_is_reached() {
        let backlog = SharedBacklog::load(Storage::memory(), 2).expect("load");
        for i in 0..5 {
            backlog.push(i, metric(1.0)).await.expect("push");
        }
        let seqs: Vec<u64> = backlog.since(None).await.iter().map(|b| b.seq).collect();
        assert_eq!(seqs, [3, 4]);
    }
}
