//! The web console in a real browser: [`run_scenario`] runs one scenario of
//! `crates/baton-server/tests/browser/run.mjs` (playwright-core from `console/node_modules`
//! driving Debian's headless Chromium) and returns what it saw. Every test crate that drives
//! the console uses this one runner; a test asks for [`crate::Tool::Browser`] first.

use std::{path::Path, process::Stdio, time::Duration};

use serde_json::{Value, json};
use tokio::process::Command;

use crate::tools::{CHROMIUM, workspace};

/// The longest one scenario may run, browser start included; each wait inside it has 15 s.
pub const SCENARIO_PATIENCE: Duration = Duration::from_secs(120);

/// Runs scenario `name` with `config` (`url`, `username`, `password` and the scenario's own
/// fields; the screenshot directory, `target/browser-screenshots`, and Chromium's path are
/// added unless given), asserts it passed and returns its JSON line.
pub async fn run_scenario(name: &str, config: Value) -> Value {
    let mut full = json!({
        "screenshot_dir": workspace().join("target/browser-screenshots"),
        "chromium": CHROMIUM,
    });
    let fields = full.as_object_mut().expect("object");
    fields.extend(config.as_object().cloned().expect("the config is an object"));
    let script = workspace().join("crates/baton-server/tests/browser/run.mjs");
    let child = Command::new("node")
        .arg(Path::new(&script))
        .arg(name)
        .env("BATON_BROWSER_CONFIG", full.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let output = tokio::time::timeout(SCENARIO_PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("scenario {name} still running after {SCENARIO_PATIENCE:?}"))
        .expect("scenario output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let result: Value = serde_json::from_str(line)
        .unwrap_or_else(|_| panic!("scenario {name} printed no JSON line; stdout: {stdout}; stderr: {stderr}"));
    assert!(
        output.status.success() && result["ok"] == true,
        "scenario {name} failed ({}): {}\nscreenshot: {}\nstderr: {stderr}",
        output.status,
        result["error"],
        result["screenshot"],
    );
    result
}
