//! What the agent learns from the machine it runs on: inventory (what it is) and metrics (how
//! it is doing). Linux first; everything compiles on Windows and macOS, where fields the
//! platform does not expose are simply absent.

pub mod inventory;
pub mod metrics;
