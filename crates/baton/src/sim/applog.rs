//! A simulated device's application log: the lines a point-of-sale app would write, so remote
//! logs and support bundles have something real to show. Written to the device's sandbox
//! (`serial/logs/app.log`), a line every few seconds while the fleet runs; the file starts over
//! beyond 1 MiB, like a rotated log.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::{sync::watch, time::sleep};

/// Where a log starts over.
const MAX_BYTES: u64 = 1 << 20;

/// Makes the sandbox's `logs` and `files` directories.
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::create_dir_all(dir.join("files"))
}

/// Appends a line every 2–8 s until `stop` turns true; a failing device logs errors too.
pub async fn write(path: PathBuf, index: u64, failing: bool, mut stop: watch::Receiver<bool>) {
    let mut rng = StdRng::seed_from_u64(index ^ 0x10c_10c);
    let mut sale = 0u32;
    loop {
        tokio::select! {
            _ = sleep(Duration::from_millis(rng.random_range(2_000..8_000))) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        sale += 1;
        let line = line(&mut rng, sale, failing);
        let path = path.clone();
        let written = tokio::task::spawn_blocking(move || append(&path, &line)).await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
    }
}

fn line(rng: &mut StdRng, sale: u32, failing: bool) -> String {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let cents: u32 = rng.random_range(150..25_000);
    let (level, message) = match rng.random_range(0..10) {
        0 if failing => ("ERROR", "card reader: no response from the terminal (timeout after 5000 ms)".to_owned()),
        1 => ("WARN", format!("receipt printer: paper low ({} % left)", rng.random_range(3..20))),
        2 => ("INFO", "sync: 12 price changes applied".to_owned()),
        _ => ("INFO", format!("sale #{sale} completed: {}.{:02} EUR", cents / 100, cents % 100)),
    };
    format!("{now} {level:5} pos-app: {message}\n")
}

fn append(path: &Path, line: &str) -> std::io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_BYTES) {
        std::fs::remove_file(path)?;
    }
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(line.as_bytes())
}
