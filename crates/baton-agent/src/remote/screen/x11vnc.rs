//! `screen_x11vnc = true`: an `x11vnc` of the session's own on the X display, listening only on
//! a Unix socket in a directory only the agent's user may enter (no TCP port, so nobody else on
//! the device or the network reaches it, and no password is needed), `-viewonly` for a view
//! session, and gone with the session: killed and waited for, its directory removed.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

use super::vnc::{self, Connection};

/// How long x11vnc has to start listening.
const STARTUP: Duration = Duration::from_secs(15);

/// A running x11vnc; [`X11vnc::stop`] ends it.
pub(super) struct X11vnc {
    child: Child,
    dir: PathBuf,
}

impl X11vnc {
    /// Starts x11vnc on `display` and connects to it.
    pub(super) async fn start(display: &str, control: bool) -> Result<(X11vnc, Connection), String> {
        let dir = private_dir().map_err(|e| format!("cannot make a directory for x11vnc's socket: {e}"))?;
        let socket = dir.join("vnc.sock");
        let log = std::fs::File::create(dir.join("x11vnc.log"))
            .map_err(|e| format!("cannot make x11vnc's log in {}: {e}", dir.display()))?;
        let mut command = Command::new("x11vnc");
        command
            .args(["-display", display, "-rfbport", "0", "-unixsock"])
            .arg(&socket)
            .args(["-nopw", "-once", "-norc", "-quiet"])
            // A viewer gets the picture only: not the device's clipboard or selection either.
            .args(if control { &[][..] } else { &["-viewonly", "-nosel"][..] })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!(
                    "cannot start x11vnc ({e}): install it (Debian: apt-get install x11vnc), or set `[remote] screen_x11vnc = false` and `screen_vnc` to a VNC server"
                ));
            }
        };
        let mut x11vnc = X11vnc { child, dir };
        match x11vnc.connect(&socket, display).await {
            Ok(conn) => Ok((x11vnc, conn)),
            Err(reason) => {
                x11vnc.stop().await;
                Err(reason)
            }
        }
    }

    /// Connects once x11vnc listens; fails with its own words if it exits first.
    async fn connect(&mut self, socket: &Path, display: &str) -> Result<Connection, String> {
        let deadline = tokio::time::Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let said = said(&self.dir.join("x11vnc.log"));
                return Err(format!(
                    "x11vnc could not show display {display} ({status}): {said}; set `[remote] screen_display` to the device's X display"
                ));
            }
            if let Ok(conn) = vnc::unix(&socket.to_string_lossy()).await {
                return Ok(conn);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("x11vnc did not listen within {} s", STARTUP.as_secs()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills x11vnc, waits for it and removes its directory.
    pub(super) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new directory under the temporary directory that only this user may enter.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("baton-screen-{:016x}", rand::random::<u64>()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// What x11vnc said of its failure: its `***` lines, without the banners of stars.
fn said(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once("***").map(|(_, rest)| rest.trim_matches(|c: char| c == '*' || c.is_whitespace())))
        .filter(|l| !l.is_empty())
        .take(2)
        .collect();
    if lines.is_empty() {
        text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no words").trim().to_owned()
    } else {
        lines.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x11vnc_s_failure_is_told_in_its_own_words() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("x11vnc.log");
        let text = "\n07/12/2026 02:25:19 ***************************************\n07/12/2026 02:25:19 *** XOpenDisplay failed (:99)\n\n*** x11vnc was unable to open the X DISPLAY: \":99\", it cannot continue.\n*** There may be \"Xlib:\" error messages\n";
        std::fs::write(&log, text).expect("log");
        assert_eq!(
            said(&log),
            "XOpenDisplay failed (:99); x11vnc was unable to open the X DISPLAY: \":99\", it cannot continue."
        );
    }
}
