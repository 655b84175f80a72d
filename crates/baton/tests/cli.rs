//! The real `baton` binary: `baton serve` as a child process on a random port, and the admin CLI
//! against it — signing in, tokens, devices as JSON and YAML, and the errors a user meets first.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

const BATON: &str = env!("CARGO_BIN_EXE_baton");
const PASSWORD: &str = "correct-horse-battery-staple";

/// A `baton serve` process; killed when dropped.
struct Server {
    child: Child,
    url: String,
    /// What the server printed to stdout before it was ready.
    banner: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(env: &[(&str, &str)], args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut command = Command::new(BATON);
        command
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("BATON_ADMIN_PASSWORD")
            .env_remove("BATON_HTTP_ADDR")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("baton serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
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

/// Runs the CLI with its own config dir, feeding `stdin`.
fn baton(config_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BATON)
        .args(args)
        .env("BATON_CONFIG_DIR", config_dir)
        .env_remove("BATON_SERVER")
        .env_remove("BATON_TOKEN")
        .env_remove("BATON_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("baton runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("baton finishes")
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

/// Asserts a failure reported as one line on stderr containing `needle`.
fn one_line_error(output: &Output, needle: &str) {
    assert!(!output.status.success(), "should fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{stderr}");
}

#[test]
fn an_admin_signs_in_creates_a_token_and_lists_devices_as_json() {
    let server = Server::start(&[("BATON_ADMIN_PASSWORD", PASSWORD)], &["--http-addr", "127.0.0.1:0"]);
    let home = tempfile::tempdir().expect("config dir");
    let cfg = home.path();

    let login = ok(&baton(cfg, &["login", "--server", &server.url, "--password-stdin"], &format!("{PASSWORD}\n")));
    assert!(login.contains("Signed in") && login.contains("user:admin"), "{login}");

    let created = ok(&baton(cfg, &["tokens", "create", "ci", "--role", "operator", "-o", "json"], ""));
    let created: serde_json::Value = serde_json::from_str(&created).expect("json");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("bt_"));

    // The new token works on its own, from another config dir.
    let other = tempfile::tempdir().expect("config dir");
    ok(&baton(other.path(), &["login", "--server", &server.url, "--api-token", &secret], ""));
    ok(&baton(other.path(), &["devices", "create", "--serial", "POS-7", "--label", "store=berlin-12"], ""));
    ok(&baton(other.path(), &["devices", "create", "--serial", "POS-8", "--label", "store=paris-1"], ""));

    let listed = ok(&baton(cfg, &["devices", "list", "-l", "store=berlin-12", "-o", "json"], ""));
    let devices: serde_json::Value = serde_json::from_str(&listed).expect("json");
    let serials: Vec<&str> = devices.as_array().expect("array").iter().filter_map(|d| d["serial"].as_str()).collect();
    assert_eq!(serials, ["POS-7"]);

    let yaml = ok(&baton(cfg, &["devices", "list", "-o", "yaml"], ""));
    assert!(yaml.contains("serial: POS-8"), "{yaml}");
    let table = ok(&baton(cfg, &["tokens", "list"], ""));
    assert!(table.contains("ci") && table.contains("operator"), "{table}");

    let token_id = created["token"]["id"].as_str().expect("id");
    ok(&baton(cfg, &["tokens", "revoke", token_id], ""));
    one_line_error(&baton(other.path(), &["devices", "list"], ""), "refused the credentials");
}

#[test]
fn a_wrong_url_a_refused_token_and_a_missing_device_each_give_one_clear_line() {
    let server = Server::start(&[("BATON_ADMIN_PASSWORD", PASSWORD)], &["--http-addr", "127.0.0.1:0"]);
    let home = tempfile::tempdir().expect("config dir");
    let cfg = home.path();

    // A port where nothing listens: bind one, note it, free it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let wrong = format!("http://{closed}");
    one_line_error(
        &baton(cfg, &["--server", &wrong, "--token", "x", "devices", "list"], ""),
        "cannot reach the Baton server",
    );
    one_line_error(&baton(cfg, &["login", "--server", "not a url", "--api-token", "x"], ""), "not a valid server URL");

    one_line_error(
        &baton(cfg, &["--server", &server.url, "--token", "bt_forged", "devices", "list"], ""),
        "refused the credentials",
    );
    one_line_error(&baton(cfg, &["login", "--server", &server.url, "--password-stdin"], "wrong password\n"), "refused");

    ok(&baton(cfg, &["login", "--server", &server.url, "--password-stdin"], &format!("{PASSWORD}\n")));
    let missing = "01900000-0000-7000-8000-000000000000";
    one_line_error(&baton(cfg, &["devices", "get", missing], ""), &format!("device {missing} not found"));
    one_line_error(&baton(cfg, &["devices", "list", "-l", "a in b"], ""), "labels");

    let fresh = tempfile::tempdir().expect("config dir");
    one_line_error(&baton(fresh.path(), &["devices", "list"], ""), "baton login --server");
}

#[test]
fn first_start_prints_a_generated_password_once_and_settings_come_from_the_environment() {
    let server = Server::start(&[("BATON_HTTP_ADDR", "127.0.0.1:0")], &[]);
    let password = server
        .banner
        .iter()
        .skip_while(|l| !l.contains("shown once"))
        .nth(1)
        .map(|l| l.trim().to_owned())
        .expect("a generated password is printed");
    assert!(password.len() >= 32);
    let home = tempfile::tempdir().expect("config dir");
    ok(&baton(home.path(), &["login", "--server", &server.url, "--password-stdin"], &format!("{password}\n")));
    let me = ok(&baton(home.path(), &["whoami", "-o", "json"], ""));
    assert!(me.contains("\"platform_admin\": true"), "{me}");
}

#[test]
fn print_default_prints_the_annotated_settings() {
    let home = tempfile::tempdir().expect("config dir");
    let out = ok(&baton(home.path(), &["config", "print-default"], ""));
    assert!(out.contains("http_addr = \"0.0.0.0:8080\"") && out.contains("# "), "{out}");
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start(&[("BATON_ADMIN_PASSWORD", PASSWORD)], &["--http-addr", "127.0.0.1:0"]);
    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(killed.success());
    let (tx, rx) = mpsc::channel();
    let mut child = std::mem::replace(&mut server.child, Command::new("true").spawn().expect("placeholder"));
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx.recv_timeout(Duration::from_secs(30)).expect("exits after SIGTERM").expect("wait");
    assert!(status.success(), "exit status {status}");
}
