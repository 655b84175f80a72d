//! The outside programs tests drive: a real browser, real MQTT clients, an S3 server, FUSE,
//! asciinema, a screen (Xvfb, x11vnc), curl and psql. A test
//! asks for its tools with [`require`] before it starts. A missing tool fails the test, naming
//! the tool and the command that installs it (`scripts/provision` installs them all), so a run
//! never passes a test that did not run. Skipping is a choice the person running the tests
//! makes (`BATON_SKIP=browser,s3`); a skipped test is written to the skip log, which
//! `scripts/test` counts at the end of the run.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// A group of outside programs some tests need, named as `BATON_SKIP` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Node, Debian's Chromium and playwright-core (from `console/`'s lock file).
    Browser,
    /// mosquitto_pub, mosquitto_sub and mosquitto_rr, with stdbuf.
    Mosquitto,
    /// Python 3 with paho-mqtt 2.
    Paho,
    /// moto's S3 server.
    S3,
    /// FUSE, for [`crate::cutfs`]: `/dev/fuse` open to this user, and Debian's `fuse3`
    /// (`fusermount3`, which mounts for users other than root).
    Fuse,
    /// asciinema, which plays and prints terminal recordings.
    Asciinema,
    /// `journalctl` (systemd) and `systemd-journal-remote`, which writes journal files from
    /// entries in the export format: a real journal where journald does not run.
    Journal,
    /// A screen for screen sessions: `Xvfb` (an X display in memory), `x11vnc` (its VNC
    /// server) and `xterm` (a program on it).
    Screen,
    /// curl, a real HTTP client (through a tunnel).
    Curl,
    /// psql, PostgreSQL's client (through a tunnel; the server is the machine's own).
    Psql,
}

/// Every tool, in the order `scripts/provision` installs them.
pub const ALL: [Tool; 10] = [
    Tool::Browser,
    Tool::Mosquitto,
    Tool::Paho,
    Tool::S3,
    Tool::Fuse,
    Tool::Asciinema,
    Tool::Journal,
    Tool::Screen,
    Tool::Curl,
    Tool::Psql,
];

/// Where Debian installs `systemd-journal-remote`.
pub const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// The path of Debian's Chromium, the browser the console tests drive.
pub const CHROMIUM: &str = "/usr/bin/chromium";

impl Tool {
    /// The name `BATON_SKIP` takes.
    pub fn key(self) -> &'static str {
        match self {
            Tool::Browser => "browser",
            Tool::Mosquitto => "mosquitto-clients",
            Tool::Paho => "paho",
            Tool::S3 => "s3",
            Tool::Fuse => "fuse",
            Tool::Asciinema => "asciinema",
            Tool::Journal => "journal",
            Tool::Screen => "screen",
            Tool::Curl => "curl",
            Tool::Psql => "psql",
        }
    }

    /// The command that installs it.
    pub fn install(self) -> &'static str {
        match self {
            Tool::Browser => "apt-get install -y chromium nodejs npm && npm ci --prefix console",
            Tool::Mosquitto => "apt-get install -y mosquitto-clients",
            Tool::Paho => "python3 -m pip install 'paho-mqtt==2.1.0'",
            Tool::S3 => "python3 -m pip install 'moto[server]==5.2.1'",
            Tool::Fuse => "apt-get install -y fuse3",
            Tool::Asciinema => "apt-get install -y asciinema",
            Tool::Journal => "apt-get install -y systemd systemd-journal-remote",
            Tool::Screen => "apt-get install -y xvfb x11vnc xterm",
            Tool::Curl => "apt-get install -y curl",
            Tool::Psql => "apt-get install -y postgresql-client",
        }
    }

    /// What is missing, if anything.
    pub fn missing(self) -> Option<&'static str> {
        match self {
            Tool::Browser => {
                if !runs("node", &["--version"], true) {
                    Some("node")
                } else if !Path::new(CHROMIUM).exists() {
                    Some(CHROMIUM)
                } else if !workspace().join("console/node_modules/playwright-core/package.json").exists() {
                    Some("console/node_modules/playwright-core")
                } else {
                    None
                }
            }
            Tool::Mosquitto => {
                let clients =
                    ["mosquitto_pub", "mosquitto_sub", "mosquitto_rr"].iter().all(|p| runs(p, &["--help"], false));
                if !clients {
                    Some("mosquitto_pub, mosquitto_sub and mosquitto_rr")
                } else if !runs("stdbuf", &["--version"], true) {
                    Some("stdbuf")
                } else {
                    None
                }
            }
            Tool::Paho => (!runs("python3", &["-c", "import paho.mqtt.client, paho.mqtt.enums"], true))
                .then_some("python3's paho-mqtt 2"),
            Tool::S3 => (!runs("moto_server", &["--help"], true)).then_some("moto_server"),
            Tool::Asciinema => (!runs("asciinema", &["--version"], true)).then_some("asciinema"),
            Tool::Curl => (!runs("curl", &["--version"], true)).then_some("curl"),
            Tool::Psql => (!runs("psql", &["--version"], true)).then_some("psql"),
            Tool::Journal => {
                if !runs("journalctl", &["--version"], true) {
                    Some("journalctl")
                } else if !runs(JOURNAL_REMOTE, &["--version"], true) {
                    Some(JOURNAL_REMOTE)
                } else {
                    None
                }
            }
            Tool::Screen => {
                // Xvfb has no version flag; its -help exits 0.
                [("Xvfb", "-help"), ("x11vnc", "-version"), ("xterm", "-version")]
                    .into_iter()
                    .find(|(program, flag)| !runs(program, &[flag], true))
                    .map(|(program, _)| program)
            }
            Tool::Fuse => {
                let device = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse");
                if !runs("fusermount3", &["--version"], true) {
                    Some("fusermount3")
                } else if device.is_err() {
                    Some("/dev/fuse, readable and writable by this user")
                } else {
                    None
                }
            }
        }
    }
}

/// Whether the calling test may go on with `tools`: true when each is installed and none is
/// skipped. A skipped tool (in `BATON_SKIP`) logs the test as skipped and gives false: return
/// then. A missing tool that is not skipped fails the test, saying how to install it.
pub fn require(tools: &[Tool]) -> bool {
    let asked = skip_list();
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    if let Some(skipped) = tools.iter().find(|t| asked.iter().any(|a| a == t.key() || a == "all")) {
        log_skip(&test, skipped.key());
        println!("SKIPPED {test}: BATON_SKIP includes {}", skipped.key());
        return false;
    }
    for tool in tools {
        if let Some(missing) = tool.missing() {
            panic!(
                "{missing} is missing, so this test cannot run. Install it with `{}` (scripts/provision installs \
                 every tool the tests need), or skip these tests on purpose with BATON_SKIP={}",
                tool.install(),
                tool.key()
            );
        }
    }
    true
}

/// The tools `BATON_SKIP` names (comma-separated; `all` skips every tool).
pub fn skip_list() -> Vec<String> {
    std::env::var("BATON_SKIP")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Where skipped tests are written: `BATON_SKIP_LOG`, or `target/baton-skipped.log`.
pub fn skip_log() -> PathBuf {
    std::env::var_os("BATON_SKIP_LOG").map_or_else(|| workspace().join("target/baton-skipped.log"), PathBuf::from)
}

fn log_skip(test: &str, tool: &str) {
    let path = skip_log();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{test}\t{tool}"));
    if let Err(e) = written {
        panic!("cannot record the skipped test in {}: {e}", path.display());
    }
}

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn runs(program: &str, args: &[&str], must_succeed: bool) -> bool {
    let status = Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
    status.is_ok_and(|s| s.success() || !must_succeed)
}
