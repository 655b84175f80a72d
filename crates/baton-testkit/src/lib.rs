//! Test helpers shared by every Baton test crate (a dev-dependency only): [`eventually`], the
//! one way a test waits for something to become true, and [`tools`], the outside programs
//! tests drive — which fail a test when missing, unless the person running the tests chose to
//! skip them, and then are counted — [`cutfs`], the file system that power-cut tests cut, and
//! [`browser`], which runs a web-console scenario in headless Chromium.

pub mod browser;
#[cfg(target_os = "linux")]
pub mod cutfs;
pub mod poll;
pub mod tools;

pub use poll::{PATIENCE, eventually, eventually_within};
pub use tools::{Tool, require};
