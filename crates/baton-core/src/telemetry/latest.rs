//! The newest value of each metric of a device, as the telemetry writer keeps them between
//! batches (so a batch costs one UPDATE of its device instead of a read and a write).
//!
//! Compact on purpose: the writer holds one for every device that ever sent telemetry, so a
//! large fleet pays this per device. Metric names are shared (a fleet reports the same dozen
//! names), and the values are a sorted vector, not a map of owned strings: ≈ 300 B for twelve
//! metrics instead of ≈ 1.6 KiB.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use baton_proto::agent::Sample;
use serde::{Serialize, Serializer};

/// Metric names, each stored once.
#[derive(Default)]
pub(super) struct Names(HashSet<Arc<str>>);

impl Names {
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.0.get(name) {
            return known.clone();
        }
        let name: Arc<str> = Arc::from(name);
        self.0.insert(name.clone());
        name
    }
}

/// A device's newest values: the time of the newest sample (ms; 0 for none) and each metric's
/// newest value, sorted by name. Serialized as the JSON object stored in `latest_telemetry`.
#[derive(Clone, Default, Debug, PartialEq)]
pub(super) struct Latest {
    pub at: i64,
    values: Vec<(Arc<str>, f64)>,
}

impl Latest {
    /// From what is stored.
    pub fn stored(at: i64, values: BTreeMap<String, f64>, names: &mut Names) -> Self {
        Self { at, values: values.into_iter().map(|(k, v)| (names.get(&k), v)).collect() }
    }

    /// With the samples merged in, oldest first; samples older than what is kept are skipped
    /// (an old batch, resent after a reconnect, does not overwrite newer values).
    pub fn merged(&self, samples: &[Sample], names: &mut Names) -> Self {
        let mut next = self.clone();
        let mut ordered: Vec<&Sample> = samples.iter().filter(|s| s.ts >= self.at).collect();
        ordered.sort_by_key(|s| s.ts);
        for sample in ordered {
            for (name, value) in &sample.metrics {
                match next.values.binary_search_by(|(k, _)| (**k).cmp(name.as_str())) {
                    Ok(i) => next.values[i].1 = *value,
                    Err(i) => next.values.insert(i, (names.get(name), *value)),
                }
            }
            next.at = sample.ts;
        }
        next.values.shrink_to_fit();
        next
    }
}

impl Serialize for Latest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.values.iter().map(|(k, v)| (&**k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ts: i64, metrics: &[(&str, f64)]) -> Sample {
        Sample { ts, metrics: metrics.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect() }
    }

    #[test]
    fn newer_samples_win_older_ones_are_skipped_and_the_json_is_the_sorted_object() {
        let mut names = Names::default();
        let stored = Latest::stored(100, BTreeMap::from([("temp".to_owned(), 20.0)]), &mut names);
        let merged = stored.merged(
            &[sample(150, &[("cpu", 5.0), ("temp", 21.0)]), sample(90, &[("temp", 1.0), ("old", 1.0)])],
            &mut names,
        );
        assert_eq!(merged.at, 150);
        assert_eq!(serde_json::to_string(&merged).expect("serializes"), r#"{"cpu":5.0,"temp":21.0}"#);
        // Names are shared between devices.
        let other = Latest::default().merged(&[sample(1, &[("cpu", 1.0)])], &mut names);
        assert!(Arc::ptr_eq(&other.values[0].0, &merged.values[0].0));
    }
}
