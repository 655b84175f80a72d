//! The real `baton` binary: `baton serve` as a child process on a random port, and the admin CLI
//! against it — signing in, tokens, devices as JSON and YAML, and the errors a user meets first.

mod support;

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use support::{BATON, Server};

const PASSWORD: &str = "correct-horse-battery-staple";

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

/// Signs in as the admin from a fresh config dir.
fn admin(server: &Server) -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("config dir");
    ok(&baton(home.path(), &["login", "--server", &server.url, "--password-stdin"], &format!("{PASSWORD}\n")));
    home
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(output)).expect("json")
}

fn start() -> Server {
    Server::start(&[("BATON_ADMIN_PASSWORD", PASSWORD)], &["--http-addr", "127.0.0.1:0"])
}

#[test]
fn enrollment_tokens_are_created_listed_and_revoked() {
    let server = start();
    let home = admin(&server);
    let cfg = home.path();

    let args = ["enrollment-tokens", "create", "factory", "--label", "site=berlin", "--requires-approval"];
    let created = baton(cfg, &[&args[..], &["--max-uses", "10", "--expires-in-hours", "24"]].concat(), "");
    let stdout = ok(&created);
    let secret = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "only the secret on stdout: {stdout}");
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(stderr.contains("not shown again"), "{stderr}");
    assert!(stderr.contains(&format!("baton-agent enroll --server {} --token {secret}", server.url)), "{stderr}");

    let other = json(&baton(cfg, &["enrollment-tokens", "create", "line-2", "-o", "json"], ""));
    let other_secret = other["secret"].as_str().expect("secret");
    assert!(other["enroll_command"].as_str().expect("command").ends_with(&format!("--token {other_secret}")));
    assert_eq!(other["token"]["requires_approval"], false);

    let listed = json(&baton(cfg, &["enrollment-tokens", "list", "-o", "json"], ""));
    let factory = listed.as_array().expect("array").iter().find(|t| t["name"] == "factory").expect("factory");
    assert_eq!((factory["max_uses"].as_u64(), factory["requires_approval"].as_bool()), (Some(10), Some(true)));
    assert_eq!(factory["labels"]["site"], "berlin");
    assert!(factory.get("secret").is_none());
    let table = ok(&baton(cfg, &["enrollment-tokens", "list"], ""));
    assert!(table.contains("factory") && table.contains("0/10") && table.contains("line-2"), "{table}");

    let id = factory["id"].as_str().expect("id");
    let revoked = json(&baton(cfg, &["enrollment-tokens", "revoke", id, "-o", "json"], ""));
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let got = json(&baton(cfg, &["enrollment-tokens", "get", id, "-o", "json"], ""));
    assert_eq!(got["revoked_at"], revoked["revoked_at"]);
    one_line_error(&baton(cfg, &["enrollment-tokens", "create", "x", "--label", "oops"], ""), "key=value");
}

#[test]
fn devices_import_from_csv_resolves_group_names_and_names_the_failing_line() {
    let server = start();
    let home = admin(&server);
    let cfg = home.path();
    let group = json(&baton(cfg, &["groups", "create", "Berlin Stores", "-o", "json"], ""));
    let group_id = group["id"].as_str().expect("id");
    // A group whose name contains the other's: the match must be exact.
    ok(&baton(cfg, &["groups", "create", "Berlin Stores East"], ""));

    let file = cfg.join("devices.csv");
    let csv = "serial,name,groups,labels\r\n\
               CSV-1,\"Till 1, front\",Berlin Stores,store=berlin-12;tier=prod\r\n\
               CSV-2,\"The \"\"big\"\" one\",,\r\n";
    std::fs::write(&file, csv).expect("write csv");
    let path = file.to_str().expect("utf-8 path");
    let out = ok(&baton(cfg, &["devices", "import", path], ""));
    assert!(out.contains("Created 2 device(s)"), "{out}");

    let listed = json(&baton(cfg, &["devices", "list", "-q", "CSV-", "-o", "json"], ""));
    let by_serial = |s: &str| listed.as_array().expect("array").iter().find(|d| d["serial"] == s).cloned().expect(s);
    let first = by_serial("CSV-1");
    assert_eq!(first["name"], "Till 1, front");
    assert_eq!(first["groups"], serde_json::json!([group_id]));
    assert_eq!(first["labels"], serde_json::json!({"store": "berlin-12", "tier": "prod"}));
    assert_eq!(by_serial("CSV-2")["name"], "The \"big\" one");

    std::fs::write(&file, "serial,name,groups,labels\nCSV-3,,Berlin Stores,\nCSV-4,,Paris Stores,\n").expect("write");
    one_line_error(&baton(cfg, &["devices", "import", path], ""), "line 3: no group is named `Paris Stores`");
    // A serial that exists already: the server's error comes back naming the line; nothing is created.
    std::fs::write(&file, "serial\nCSV-9\nCSV-1\n").expect("write");
    one_line_error(&baton(cfg, &["devices", "import", path], ""), "line 3: serial: a device with serial `CSV-1`");
    let listed = json(&baton(cfg, &["devices", "list", "-q", "CSV-", "-o", "json"], ""));
    assert_eq!(listed.as_array().expect("array").len(), 2, "all or nothing: {listed}");
    std::fs::write(&file, "serial,name\nCSV-5,\"unclosed\n").expect("write");
    one_line_error(&baton(cfg, &["devices", "import", path], ""), "line 2: a quoted field is not closed");
}

#[test]
fn a_command_for_an_offline_device_stays_queued_until_canceled() {
    let server = start();
    let home = admin(&server);
    let cfg = home.path();
    let device = json(&baton(cfg, &["devices", "create", "--serial", "CMD-1", "-o", "json"], ""));
    let id = device["id"].as_str().expect("id");

    let batch = json(&baton(cfg, &["commands", "send", "--device", id, "ping", "-o", "json"], ""));
    assert_eq!((batch["total"].as_u64(), batch["states"]["QUEUED"].as_u64()), (Some(1), Some(1)), "{batch}");
    let listed = json(&baton(cfg, &["commands", "list", "--device", id, "-o", "json"], ""));
    let command = &listed[0];
    assert_eq!((command["state"].as_str(), command["batch_id"].as_str()), (Some("QUEUED"), batch["id"].as_str()));
    let command_id = command["id"].as_str().expect("id");
    let shown = ok(&baton(cfg, &["commands", "get", command_id], ""));
    assert!(shown.contains("QUEUED") && shown.contains("ping"), "{shown}");

    let canceled = json(&baton(cfg, &["commands", "cancel", command_id, "-o", "json"], ""));
    assert_eq!(canceled["state"], "CANCELED");

    // Waiting for a device that never comes gives up after --wait-timeout; the command stays queued.
    let send = ["commands", "send", "--device", id, "--wait", "--wait-timeout", "1", "-o", "json"];
    one_line_error(
        &baton(cfg, &[&send[..], &["exec", "--", "echo", "-n", "hi"]].concat(), ""),
        "stopped waiting after 1 s",
    );
    let queued = json(&baton(cfg, &["commands", "list", "--state", "queued", "-o", "json"], ""));
    let queued = queued.as_array().expect("array");
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0]["command"], serde_json::json!({"type": "exec", "program": "echo", "args": ["-n", "hi"]}));

    one_line_error(&baton(cfg, &["commands", "send", "-l", "nobody=here", "reboot"], ""), "no active device");
    let missing = baton(cfg, &["commands", "send", "ping"], "");
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("--device"));
}

#[test]
fn no_pending_devices_and_no_telemetry_read_as_such() {
    let server = start();
    let home = admin(&server);
    let cfg = home.path();
    assert_eq!(json(&baton(cfg, &["devices", "pending", "-o", "json"], "")), serde_json::json!([]));
    assert!(ok(&baton(cfg, &["devices", "pending"], "")).contains("No devices are waiting for approval"));

    let device = json(&baton(cfg, &["devices", "create", "--serial", "TEL-1", "-o", "json"], ""));
    let id = device["id"].as_str().expect("id");
    let latest = ok(&baton(cfg, &["telemetry", "latest", id], ""));
    assert!(latest.contains("has reported no telemetry yet"), "{latest}");
    let latest = json(&baton(cfg, &["telemetry", "latest", id, "-o", "json"], ""));
    assert_eq!((latest["metrics"].clone(), latest["at"].clone()), (serde_json::json!({}), serde_json::Value::Null));
    let series =
        json(&baton(cfg, &["telemetry", "query", id, "--metric", "cpu.usage_pct", "--since", "30m", "-o", "json"], ""));
    assert_eq!(series["points"], serde_json::json!([]));
    let bad = baton(cfg, &["telemetry", "query", id, "--metric", "cpu", "--since", "1x"], "");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("not a duration"));

    let inventory = ok(&baton(cfg, &["devices", "inventory", id], ""));
    assert!(inventory.contains("has not reported its inventory"), "{inventory}");
    one_line_error(&baton(cfg, &["devices", "approve", id], ""), "is active, not pending");
}

#[test]
fn desired_attributes_are_set_and_unset_and_a_credential_is_printed_once() {
    let server = start();
    let home = admin(&server);
    let cfg = home.path();
    let device = json(&baton(cfg, &["devices", "create", "--serial", "MQTT-7", "-o", "json"], ""));
    let id = device["id"].as_str().expect("id");
    assert!(ok(&baton(cfg, &["devices", "attributes", id], "")).contains("has no attributes yet"));

    let args = ["devices", "set-desired", id, "interval=60", "mode=eco", "flags=[1,2]", "-o", "json"];
    let set = json(&baton(cfg, &args, ""));
    assert_eq!(set["desired"], serde_json::json!({"interval": 60, "mode": "eco", "flags": [1, 2]}));
    let unset =
        json(&baton(cfg, &["devices", "set-desired", id, "interval=\"60\"", "--unset", "mode", "-o", "json"], ""));
    assert_eq!(unset["desired"], serde_json::json!({"interval": "60", "flags": [1, 2]}));
    let table = ok(&baton(cfg, &["devices", "attributes", id], ""));
    assert!(table.contains("DESIRED") && table.contains("flags") && table.contains("[1,2]"), "{table}");
    one_line_error(&baton(cfg, &["devices", "set-desired", id, "oops"], ""), "key=value");

    let issued = baton(cfg, &["devices", "credentials", id], "");
    let stdout = ok(&issued);
    assert_eq!(stdout.lines().count(), 1, "only the secret on stdout: {stdout}");
    assert!(stdout.trim().starts_with("bd_"), "{stdout}");
    let stderr = String::from_utf8_lossy(&issued.stderr);
    assert!(stderr.contains("not shown again") && stderr.contains(&format!("username `{id}`")), "{stderr}");
    let again = json(&baton(cfg, &["devices", "credentials", id, "-o", "json"], ""));
    assert_eq!(again["device_id"], id);
    assert_ne!(again["secret"].as_str(), Some(stdout.trim()));
}

#[test]
fn devices_watch_prints_events_as_they_happen() {
    let server = start();
    let home = admin(&server);
    let cfg = home.path();
    let device = json(&baton(cfg, &["devices", "create", "--serial", "W-1", "-o", "json"], ""));
    let id = device["id"].as_str().expect("id");

    let mut watch = Command::new(BATON)
        .args(["devices", "watch", "--device", id, "-o", "json"])
        .env("BATON_CONFIG_DIR", cfg)
        .env_remove("BATON_SERVER")
        .env_remove("BATON_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch runs");
    let stderr = support::lines(watch.stderr.take().expect("stderr"));
    let stdout = support::lines(watch.stdout.take().expect("stdout"));
    let ready = stderr.recv_timeout(Duration::from_secs(30)).expect("the watcher says it is watching");
    assert!(ready.contains("Watching device events"), "{ready}");

    ok(&baton(cfg, &["devices", "decommission", id, "--wipe"], ""));
    let line = stdout.recv_timeout(Duration::from_secs(30)).expect("an event line");
    let _ = watch.kill();
    let _ = watch.wait();
    let event: serde_json::Value = serde_json::from_str(&line).expect("one JSON event per line");
    assert_eq!((event["kind"].as_str(), event["device_id"].as_str()), (Some("device.decommissioned"), Some(id)));
    assert_eq!(event["data"]["wipe"], true);

    let listed = json(&baton(cfg, &["events", "list", "--device", id, "--kind", "device.", "-o", "json"], ""));
    assert_eq!(listed[0]["id"], event["id"]);
    let table = ok(&baton(cfg, &["events", "list", "--device", id], ""));
    assert!(table.contains("device.decommissioned"), "{table}");
}

#[test]
fn an_artifact_is_pushed_with_progress_signed_by_the_server_key_listed_and_deleted() {
    let server = start();
    let home = admin(&server);
    let cfg = home.path();
    let key = json(&baton(cfg, &["signing-keys", "create", "release", "-o", "json"], ""));
    assert_eq!(key["held_by_server"], true, "{key}");
    let file = cfg.join("app.bin");
    let bytes: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&file, &bytes).expect("write");
    let path = file.to_str().expect("utf-8 path");
    let args = ["artifacts", "push", path, "--name", "kiosk-app", "--version", "2.0.1", "--kind", "package"];
    let pushed = json(&baton(cfg, &[&args[..], &["--os", "linux", "-o", "json"]].concat(), ""));
    assert_eq!(pushed["size"], 2_000_000, "{pushed}");
    assert_eq!(pushed["kind"], "package");
    assert_eq!(pushed["signature"]["key_id"], key["id"], "{pushed}");
    let sha = pushed["sha256"].as_str().expect("sha256");
    use sha2::Digest;
    let expected: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sha, expected);

    let table = ok(&baton(cfg, &["artifacts", "list"], ""));
    assert!(table.contains("kiosk-app") && table.contains("2.0.1") && table.contains("1.91 MiB"), "{table}");
    one_line_error(&baton(cfg, &args, ""), "kiosk-app 2.0.1 exists already");
    one_line_error(
        &baton(cfg, &["artifacts", "push", "/nonexistent/file", "--name", "x", "--version", "1"], ""),
        "cannot open /nonexistent/file",
    );
    let id = pushed["id"].as_str().expect("id");
    ok(&baton(cfg, &["artifacts", "delete", id], ""));
    let listed = json(&baton(cfg, &["artifacts", "list", "-o", "json"], ""));
    assert_eq!(listed, serde_json::json!([]));
    let revoked = json(&baton(cfg, &["signing-keys", "revoke", key["id"].as_str().expect("id"), "-o", "json"], ""));
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
}

/// A server key, a file artifact `motd` 1.0, and two offline devices: what a rollout needs.
fn rollout_fixture(cfg: &Path) -> (String, [String; 2]) {
    ok(&baton(cfg, &["signing-keys", "create", "release"], ""));
    let file = cfg.join("motd");
    std::fs::write(&file, "welcome\n").expect("write");
    let push = ["artifacts", "push", file.to_str().expect("utf-8 path"), "--name", "motd", "--version", "1.0"];
    let artifact = json(&baton(cfg, &[&push[..], &["-o", "json"]].concat(), ""));
    let device = |serial: &str| {
        let d = json(&baton(cfg, &["devices", "create", "--serial", serial, "--label", "tier=test", "-o", "json"], ""));
        d["id"].as_str().expect("id").to_owned()
    };
    (artifact["id"].as_str().expect("id").to_owned(), [device("RO-1"), device("RO-2")])
}

#[test]
fn a_draft_rollout_is_shown_by_wave_steered_and_watched_with_an_exit_status_per_outcome() {
    let server = start();
    let home = admin(&server);
    let cfg = home.path();
    let (_, [d1, d2]) = rollout_fixture(cfg);
    let create = ["rollouts", "create", "motd@1.0", "--draft", "--device", &d1, "--device", &d2, "--path", "/tmp/x"];
    let rollout = json(&baton(cfg, &[&create[..], &["--waves", "50%,100%", "-o", "json"]].concat(), ""));
    assert_eq!((rollout["state"].as_str(), rollout["name"].as_str()), (Some("DRAFT"), Some("motd 1.0")), "{rollout}");
    let id = rollout["id"].as_str().expect("id");

    let got = json(&baton(cfg, &["rollouts", "get", id, "-o", "json"], ""));
    let waves = got["progress"]["waves"].as_array().expect("waves");
    assert_eq!(waves.len(), 2, "{got}");
    for wave in waves {
        assert_eq!((wave["devices"].as_u64(), wave["states"]["QUEUED"].as_u64()), (Some(1), Some(1)), "{got}");
    }
    let table = ok(&baton(cfg, &["rollouts", "get", id], ""));
    assert!(table.contains("DRAFT") && table.contains("motd@1.0") && table.contains("QUEUED"), "{table}");
    let executions = json(&baton(cfg, &["rollouts", "executions", id, "-o", "json"], ""));
    let states: Vec<&str> = executions.as_array().expect("array").iter().filter_map(|e| e["state"].as_str()).collect();
    assert_eq!(states, ["QUEUED", "QUEUED"]);
    let second =
        json(&baton(cfg, &["rollouts", "executions", id, "--wave", "2", "--state", "queued", "-o", "json"], ""));
    assert_eq!(second.as_array().map(Vec::len), Some(1), "{second}");

    // Watching ends at once when a person must act (3) or the rollout is over without completing (4).
    let watch = baton(cfg, &["rollouts", "watch", id], "");
    assert_eq!(watch.status.code(), Some(3));
    one_line_error(&watch, &format!("is a DRAFT: nothing happens until `baton rollouts start {id}`"));
    assert!(ok(&baton(cfg, &["rollouts", "start", id], "")).contains("is RUNNING"));
    assert!(ok(&baton(cfg, &["rollouts", "pause", id], "")).contains("is PAUSED (by a person)"));
    let watch = baton(cfg, &["rollouts", "watch", id], "");
    assert_eq!(watch.status.code(), Some(3));
    one_line_error(&watch, "is PAUSED by a person");
    assert!(ok(&baton(cfg, &["rollouts", "resume", id], "")).contains("is RUNNING"));
    assert_eq!(json(&baton(cfg, &["rollouts", "cancel", id, "-o", "json"], ""))["state"], "CANCELED");
    let watch = baton(cfg, &["rollouts", "watch", id, "-o", "json"], "");
    assert_eq!(watch.status.code(), Some(4));
    one_line_error(&watch, "was CANCELED");
    let last: serde_json::Value = serde_json::from_slice(&watch.stdout).expect("the final rollout as JSON");
    assert_eq!(last["state"], "CANCELED");

    let listed = json(&baton(cfg, &["rollouts", "list", "--state", "canceled", "-o", "json"], ""));
    assert_eq!(listed[0]["id"], id, "{listed}");
    assert!(ok(&baton(cfg, &["rollouts", "list"], "")).contains("CANCELED"));
    assert!(ok(&baton(cfg, &["rollouts", "delete", id], "")).contains("deleted rollout"));
    one_line_error(&baton(cfg, &["rollouts", "get", id], ""), "not found");
}

#[test]
fn a_rollout_finds_groups_by_name_and_each_wrong_flag_gives_one_clear_line() {
    let server = start();
    let home = admin(&server);
    let cfg = home.path();
    let (artifact_id, [d1, _]) = rollout_fixture(cfg);
    let group = json(&baton(cfg, &["groups", "create", "Tills", "-o", "json"], ""));
    ok(&baton(cfg, &["groups", "add", group["id"].as_str().expect("id"), &d1], ""));
    let args = ["rollouts", "create", &artifact_id, "--draft", "--group", "Tills", "--path", "/tmp/x"];
    let made = json(&baton(cfg, &[&args[..], &["--bake", "10m", "--on-failure", "abort", "-o", "json"]].concat(), ""));
    assert_eq!(
        (made["progress"]["devices"].as_u64(), made["targets"]["groups"][0].clone()),
        (Some(1), group["id"].clone())
    );
    assert_eq!(
        (made["success_gate"]["bake_secs"].as_u64(), made["failure_gate"]["action"].as_str()),
        (Some(600), Some("ABORT"))
    );

    let base = ["rollouts", "create", "motd@1.0", "--draft", "-l", "tier=test", "--path", "/tmp/x"];
    let wrong = |extra: &[&str], needle: &str| one_line_error(&baton(cfg, &[&base[..], extra].concat(), ""), needle);
    wrong(&["--waves", "10%,0%"], "--waves: `0%` is not a wave: give a share like `10%`");
    wrong(&["--fail-percent", "120"], "--fail-percent: `120` is not a share");
    wrong(&["--bake", "soon"], "--bake: `soon` is not a duration");
    wrong(&["--install-command", "dpkg -i '{file}"], "--install-command: a quote");
    wrong(&["--group", "Nowhere"], "--group: no group is named `Nowhere`");
    wrong(&["--rollback-to", "motd@0.9"], "artifact `motd` has no version `0.9`; it has 1.0");
    let unknown = ["rollouts", "create", "kiosk@2.0", "-l", "tier=test"];
    one_line_error(&baton(cfg, &unknown, ""), "no artifact is named `kiosk`");
    let missing = "01900000-0000-7000-8000-000000000000";
    one_line_error(&baton(cfg, &["rollouts", "create", missing, "-l", "tier=test"], ""), "no artifact has the id");
    one_line_error(
        &baton(cfg, &["rollouts", "executions", missing, "--state", "broken"], ""),
        "not an execution state",
    );
}
