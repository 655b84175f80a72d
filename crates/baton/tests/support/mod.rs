//! Helpers shared by the tests that run the real `baton` binary: a `baton serve` child process
//! on a random port, and reading a child's output line by line without blocking the test.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

pub const BATON: &str = env!("CARGO_BIN_EXE_baton");

/// A `baton serve` process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// What the server printed to stdout before it was ready.
    pub banner: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `baton serve ARGS` with `env` on a fresh data dir and waits until it listens.
    pub fn start(env: &[(&str, &str)], args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut command = Command::new(BATON);
        command
            .arg("serve")
            .args(["--mqtt-addr", "127.0.0.1:0"])
            .args(args)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("BATON_ADMIN_PASSWORD")
            .env_remove("BATON_BOOTSTRAP_TOKEN")
            .env_remove("BATON_HTTP_ADDR")
            .env_remove("BATON_MQTT_ADDR")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("baton serve starts");
        let rx = lines(child.stdout.take().expect("stdout"));
        let mut banner = Vec::new();
        let url = loop {
            let line = rx.recv_timeout(Duration::from_secs(60)).expect("the server says where it listens");
            if let Some(url) = line.strip_prefix("Baton is listening on ") {
                break url.trim().to_owned();
            }
            banner.push(line);
        };
        Self { child, url, banner, _dir: dir }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of a child's output, read on a thread that keeps draining the pipe to its end (a
/// pipe nobody reads would block the child, a closed one would make its next print fail).
pub fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Asks a child to stop: SIGTERM on Unix, a kill elsewhere.
pub fn terminate(child: &mut Child) {
    #[cfg(unix)]
    {
        let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
        assert!(killed.success());
    }
    #[cfg(not(unix))]
    let _ = child.kill();
}
