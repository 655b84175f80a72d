//! Where the agent's inventory and metrics come from: the machine it runs on
//! ([`SystemSource`]), or anything else that implements [`DeviceSource`] — the simulator's
//! synthetic devices, or an application that reports for hardware the OS cannot see.

use std::collections::BTreeMap;

use baton_proto::inventory::Inventory;

use crate::system::{inventory, metrics::SystemMetrics};

pub trait DeviceSource: Send {
    /// What the device is; compared with the last report to send changes.
    fn inventory(&mut self) -> Inventory;
    /// One sample of every metric.
    fn sample(&mut self) -> BTreeMap<String, f64>;
    /// The serial to enroll with when the config names none.
    fn serial(&self) -> Option<String>;
}

/// The machine the agent runs on.
pub struct SystemSource {
    metrics: SystemMetrics,
}

impl SystemSource {
    pub fn new() -> Self {
        Self { metrics: SystemMetrics::new() }
    }
}

impl Default for SystemSource {
    fn default() -> Self {
        Self::new()
    }
}

impl DeviceSource for SystemSource {
    fn inventory(&mut self) -> Inventory {
        inventory::collect(crate::AGENT_VERSION)
    }

    fn sample(&mut self) -> BTreeMap<String, f64> {
        self.metrics.sample()
    }

    fn serial(&self) -> Option<String> {
        inventory::hardware_serial()
    }
}
