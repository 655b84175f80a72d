//! The peer of `baton bench remote`: OpenSSH on the same machine, in the same run. The bench
//! starts its own `sshd` (Debian's openssh-server) on a free loopback port with a fresh host key
//! and a fresh client key as the only authorized one (`UsePAM no`, no passwords), and drives
//! `ssh -tt … /bin/sh` through pipes: the same shell on a PTY as Baton's agent runs.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    process::{Child, ChildStdin, ChildStdout},
};

use super::{
    keys::{Keyboard, keystrokes, until},
    proc,
};

const SSHD: &str = "/usr/sbin/sshd";
const INSTALL: &str = "apt-get install openssh-server openssh-client, or leave the peer out with --no-ssh";

/// An `sshd` of the bench's own; stopped when dropped.
pub(super) struct Sshd {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
    user: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sshd's memory per idle session.
pub(super) struct Memory {
    pub sessions: usize,
    /// Proportional set size: shared pages split among the processes sharing them (sshd forks).
    pub pss_per_session: f64,
    pub rss_per_session: f64,
}

impl Sshd {
    pub async fn start() -> anyhow::Result<Self> {
        anyhow::ensure!(Path::new(SSHD).exists(), "{SSHD} is missing: {INSTALL}");
        run("ssh", &["-V"]).with_context(|| format!("no ssh client: {INSTALL}"))?;
        privilege_separation_dir()?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().to_owned();
        let key = |name: &str| path.join(name);
        for name in ["host_key", "client_key"] {
            let path = key(name).display().to_string();
            run("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", &path])?;
        }
        std::fs::copy(key("client_key.pub"), key("authorized_keys"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = key("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\n\
                 UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nPrintMotd no\nPrintLastLog no\nUseDNS no\nMaxStartups 1000\n\
                 Subsystem sftp internal-sftp\n",
                key("host_key").display(),
                key("authorized_keys").display()
            ),
        )?;
        let log = std::fs::File::create(key("sshd.log"))?;
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {SSHD}"))?;
        let user = String::from_utf8(run("id", &["-un"])?)?.trim().to_owned();
        let sshd = Sshd { child, port, dir, user };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                let log = std::fs::read_to_string(key("sshd.log")).unwrap_or_default();
                anyhow::bail!("sshd did not start listening: {}", log.trim());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(sshd)
    }

    /// Keystroke-to-echo times through one `ssh -tt` session.
    pub async fn keystrokes(&self, n: usize) -> anyhow::Result<Vec<Duration>> {
        let mut link = self.connect().await?;
        keystrokes(&mut link, n).await
    }

    /// sshd's processes' memory per idle session, from `sessions` `ssh` clients at a prompt.
    pub async fn memory(&self, sessions: usize) -> anyhow::Result<Memory> {
        let before = self.footprint()?;
        let mut held = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            let mut link = self.connect().await?;
            link.type_in(b"echo re\"\"ady\n").await?;
            until(&mut link, "ready").await?;
            held.push(link);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = self.footprint()?;
        drop(held);
        let per = |b: u64, a: u64| a.saturating_sub(b) as f64 / sessions as f64;
        Ok(Memory { sessions, pss_per_session: per(before.0, after.0), rss_per_session: per(before.1, after.1) })
    }

    /// PSS and RSS, summed over this sshd and the sshd processes it forked (not the shells).
    pub fn footprint(&self) -> anyhow::Result<(u64, u64)> {
        let mut sum = (0, 0);
        for pid in self.pids() {
            sum.0 += proc::pss_bytes(pid)?;
            sum.1 += proc::rss_bytes(pid)?;
        }
        Ok(sum)
    }

    /// This sshd and the sshd processes it forked (not the shells).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = proc::descendants(self.child.id());
        pids.push(self.child.id());
        pids.retain(|&p| proc::command_name(p).is_some_and(|c| c.starts_with("sshd")));
        pids
    }

    /// Copies with `scp` through this sshd; a side on it is written [`Sshd::remote`]`(path)`.
    pub async fn scp(&self, from: &str, to: &str) -> anyhow::Result<()> {
        let key: PathBuf = self.dir.path().join("client_key");
        let status = tokio::process::Command::new("scp")
            .args(["-q", "-P", &self.port.to_string(), "-i"])
            .arg(&key)
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-o", "BatchMode=yes", from, to])
            .stdin(Stdio::null())
            .status()
            .await
            .context("cannot start scp")?;
        anyhow::ensure!(status.success(), "scp {from} {to} failed: {status}");
        Ok(())
    }

    /// `path` on this sshd's side, as `scp` names it.
    pub fn remote(&self, path: &Path) -> String {
        format!("{}@127.0.0.1:{}", self.user, path.display())
    }

    /// `ssh -N -L …` forwarding a free local port to each of `targets` through this sshd, as
    /// `ssh -L` users do; the local addresses once each accepts connections. Stopped when dropped.
    pub async fn forward(&self, targets: &[SocketAddr]) -> anyhow::Result<(Child, Vec<SocketAddr>)> {
        let mut command = self.ssh();
        command.args(["-N", "-o", "ExitOnForwardFailure=yes"]);
        let mut local = Vec::with_capacity(targets.len());
        for target in targets {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            command.arg("-L").arg(format!("{port}:{target}"));
            local.push(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        let mut child = command
            .arg(format!("{}@127.0.0.1", self.user))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start ssh")?;
        let started = Instant::now();
        for addr in &local {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                anyhow::ensure!(child.try_wait()?.is_none(), "ssh -L ended before it forwarded {addr}");
                anyhow::ensure!(started.elapsed() < Duration::from_secs(20), "ssh -L did not listen on {addr}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok((child, local))
    }

    async fn connect(&self) -> anyhow::Result<SshLink> {
        let mut child = self
            .ssh()
            .args(["-tt", &format!("{}@127.0.0.1", self.user), "/bin/sh"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start ssh")?;
        let stdin = child.stdin.take().context("ssh stdin")?;
        let stdout = child.stdout.take().context("ssh stdout")?;
        Ok(SshLink { _child: child, stdin, stdout, buf: vec![0; 4096] })
    }
}

impl Sshd {
    /// `ssh` to this sshd with the bench's key, asking nothing (killed when dropped); the caller
    /// adds its options, the destination and the command.
    fn ssh(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ssh");
        command.args(["-p", &self.port.to_string(), "-i"]).arg(self.dir.path().join("client_key"));
        command.args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]);
        command.args(["-o", "BatchMode=yes"]).stderr(Stdio::inherit()).kill_on_drop(true);
        command
    }
}

/// An `ssh -tt` client, typed into through its stdin.
struct SshLink {
    _child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    buf: Vec<u8>,
}

impl Keyboard for SshLink {
    async fn type_in(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stdin.write_all(bytes).await?;
        self.stdin.flush().await.context("writing to ssh")
    }

    async fn output(&mut self) -> anyhow::Result<Vec<u8>> {
        let n = self.stdout.read(&mut self.buf).await?;
        anyhow::ensure!(n > 0, "ssh ended");
        Ok(self.buf[..n].to_vec())
    }
}

/// sshd refuses to start without its privilege separation directory, which Debian makes only
/// when the ssh service starts; made here when missing (root can).
fn privilege_separation_dir() -> anyhow::Result<()> {
    let dir = Path::new("/run/sshd");
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).context("sshd needs /run/sshd (run `mkdir -m 755 /run/sshd` as root)")?;
    #[cfg(unix)]
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(())
}

/// Runs a program to its end; its stdout.
fn run(program: &str, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    anyhow::ensure!(out.status.success(), "{program} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(out.stdout)
}
