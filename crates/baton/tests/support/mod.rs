//! Helpers shared by the tests that run the real `baton` binary: a `baton serve` child process
//! on a random port, and reading a child's output line by line without blocking the test.

#![allow(dead_code)]

pub mod check;
pub mod remote;
pub mod screen;

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
    /// The data directory's parent, when the server made it (removed when dropped).
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `baton serve ARGS` with `env` on a fresh data dir and waits until it listens.
    pub fn start(env: &[(&str, &str)], args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = Self::start_in(&dir.path().join("data"), env, args);
        server._dir = Some(dir);
        server
    }

    /// Starts `baton serve ARGS` with `env` on the data directory `data` (kept when dropped, so
    /// a test can start the server again on what the last one left).
    pub fn start_in(data: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        Self::start_under(&[], data, env, args)
    }

    /// [`Server::start_in`] run by `wrapper` (e.g. `prlimit --nofile=1024:1024 --`).
    pub fn start_under(wrapper: &[&str], data: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(BATON);
                command
            }
            None => Command::new(BATON),
        };
        command
            .arg("serve")
            .args(["--mqtt-addr", "127.0.0.1:0"])
            .args(args)
            .arg("--data-dir")
            .arg(data)
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
        // The lines after it, to the last: where MQTT listens.
        loop {
            let line = rx.recv_timeout(Duration::from_secs(60)).expect("the server's banner ends");
            let last = line.trim_start().starts_with("Sign in:");
            banner.push(line);
            if last {
                break;
            }
        }
        Self { child, url, banner, _dir: None }
    }
}

impl Server {
    /// Where plain MQTT listens, from the banner.
    pub fn mqtt_addr(&self) -> Option<std::net::SocketAddr> {
        let line = self.banner.iter().find_map(|l| l.trim_start().strip_prefix("MQTT:"))?;
        line.split_whitespace().next()?.parse().ok()
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

/// Publishes one QoS 1 message to the device's own telemetry topic with `mosquitto_pub` (a
/// connection of its own, as device `id` with `secret`); true when the server's PUBACK
/// accepted it. A publish that has not ended within 20 s counts as not acknowledged.
pub async fn publish_acked(port: &str, id: &str, secret: &str, message: &str) -> bool {
    let published = tokio::process::Command::new("mosquitto_pub")
        .args(["-d", "-h", "127.0.0.1", "-p", port, "-q", "1"])
        .args(["-i", id, "-u", id, "-P", secret, "-t", "baton/v1/me/telemetry", "-m", message])
        .kill_on_drop(true)
        .output();
    matches!(
        tokio::time::timeout(Duration::from_secs(20), published).await,
        Ok(Ok(out)) if String::from_utf8_lossy(&out.stdout).contains("received PUBACK (Mid: 1, RC:0)")
    )
}
