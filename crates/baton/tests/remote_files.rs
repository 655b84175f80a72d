//! File transfer end to end with real processes: `baton serve`, the real `baton-agent` with
//! `[remote] files = true` and a `file_paths` directory, and the real `baton cp`. A 20 MB file
//! goes up and comes back with the same SHA-256 (CLI and API); an upload cut in the middle (a
//! raw HTTP request that stops half-way) and a download cut likewise resume from where they
//! stopped and send only the rest; a directory comes down as tar; `..`, a link out of the
//! allowed directory and a path outside it are refused saying why, as are files switched off, a
//! viewer and another tenant; every transfer is an event with its actor, path, size and SHA-256.

mod support;

use std::path::Path;

use baton_client::Client;
use baton_proto::api::{
    access::UserCreate,
    files::{CHECKSUM_HEADER, FileStatQuery, FileUpload},
};
use baton_testkit::eventually;
use support::{
    Server,
    check::{device_events, events, problem, random, server_with, sha256, text},
    remote::{cli, enrolled, other_tenant},
};
use tokio::io::AsyncWriteExt;

const BOOTSTRAP: &str = "bt_remote-files-test-bootstrap-token";
const MB: usize = 1024 * 1024;

fn server() -> (Server, Client) {
    server_with(BOOTSTRAP)
}

/// The agent's `[remote]` body allowing files under `dir`.
fn files_under(dir: &Path) -> String {
    format!("files = true\nfile_paths = [\"{}\"]", dir.display())
}

#[tokio::test]
async fn a_20_mb_file_goes_up_and_comes_back_with_the_same_sha256_through_the_cli_and_the_api() {
    let (server, client) = server();
    let allowed = tempfile::tempdir().expect("tempdir");
    let (_agent, device) = enrolled(&client, &server.url, "files-1", &files_under(allowed.path())).await;
    let here = tempfile::tempdir().expect("tempdir");
    let bytes = random(20 * MB, 1);
    let sha = sha256(&bytes);
    let local = here.path().join("big.bin");
    std::fs::write(&local, &bytes).expect("local file");
    let baton = |args: &[&str]| cli(&server.url, BOOTSTRAP, args);

    // Up with the CLI, to a directory (the file keeps its name), the device named by serial.
    let remote_dir = allowed.path().display().to_string();
    let up = baton(&["cp", local.to_str().expect("utf-8"), &format!("files-1:{remote_dir}")]);
    assert!(up.status.success(), "stderr: {}", text(&up.stderr));
    assert!(text(&up.stdout).contains(&sha), "{}", text(&up.stdout));
    let on_device = allowed.path().join("big.bin");
    assert_eq!(sha256(&std::fs::read(&on_device).expect("uploaded")), sha);
    let leftovers: Vec<_> =
        std::fs::read_dir(allowed.path()).expect("dir").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(leftovers, ["big.bin"], "no partial file is left");

    // Back with the CLI.
    let back = here.path().join("back.bin");
    let remote = format!("{}:{}", device.id, on_device.display());
    let down = baton(&["cp", &remote, back.to_str().expect("utf-8")]);
    assert!(down.status.success(), "stderr: {}", text(&down.stderr));
    assert_eq!(sha256(&std::fs::read(&back).expect("downloaded")), sha);
    assert!(!here.path().join("back.bin.baton-part").exists());

    // Through the API: a PUT of the bytes, a GET with the SHA-256 in its headers, a stat.
    let api_path = format!("{}/api.bin", allowed.path().display());
    let facts = FileUpload {
        path: api_path.clone(),
        size: bytes.len() as u64,
        sha256: sha.clone(),
        offset: 0,
        mode: Some("600".into()),
    };
    let body = futures::stream::iter(bytes.chunks(MB).map(|c| Ok(c.to_vec())).collect::<Vec<_>>());
    let written = client.upload_file(&device.id, &facts, body).await.expect("uploaded through the API");
    assert_eq!((written.size, written.sha256.as_str()), (bytes.len() as u64, sha.as_str()));
    let response = client.download_file(&device.id, &api_path, None).await.expect("download");
    assert_eq!(response.headers()[CHECKSUM_HEADER], sha.as_str());
    assert_eq!(response.headers()["etag"], format!("\"{sha}\"").as_str());
    assert_eq!(response.content_length(), Some(bytes.len() as u64));
    let got = response.bytes().await.expect("body");
    assert_eq!(sha256(&got), sha);
    let stat = client
        .file_stat(&device.id, &FileStatQuery { path: api_path.clone(), upload_sha256: None })
        .await
        .expect("stat")
        .file;
    assert_eq!((stat.size, stat.sha256.as_deref(), stat.mode), (bytes.len() as u64, Some(sha.as_str()), Some(0o600)));

    // Each transfer is an event with who, from where, what and how much.
    let uploads = events(&client, &device.id, "remote.file_uploaded", 2).await;
    let downloads = events(&client, &device.id, "remote.file_downloaded", 2).await;
    for event in uploads.iter().chain(&downloads) {
        let d = &event.data;
        assert_eq!(
            (d["user"].as_str(), d["source_addr"].as_str()),
            (Some("token:bootstrap"), Some("127.0.0.1")),
            "{d}"
        );
        assert_eq!((d["size"].as_u64(), d["sha256"].as_str()), (Some(bytes.len() as u64), Some(sha.as_str())), "{d}");
        assert_eq!((d["bytes"].as_u64(), d["complete"].as_bool()), (Some(bytes.len() as u64), Some(true)), "{d}");
    }
    assert_eq!(uploads[1].data["path"].as_str(), Some(on_device.to_str().expect("utf-8")));
    assert_eq!(uploads[0].data["path"].as_str(), Some(api_path.as_str()));
}

#[tokio::test]
async fn a_cut_transfer_resumes_from_where_it_stopped_and_sends_only_the_rest() {
    let (server, client) = server();
    let allowed = tempfile::tempdir().expect("tempdir");
    let (_agent, device) = enrolled(&client, &server.url, "files-2", &files_under(allowed.path())).await;
    let here = tempfile::tempdir().expect("tempdir");
    let bytes = random(8 * MB, 2);
    let (sha, half) = (sha256(&bytes), 3 * MB + 12_345);
    let local = here.path().join("cut.bin");
    std::fs::write(&local, &bytes).expect("local file");
    let target = allowed.path().join("cut.bin");

    // A raw PUT announcing every byte that sends a part and hangs up.
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "PUT /api/v1/devices/{}/files?path={}&size={}&sha256={sha} HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {BOOTSTRAP}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        device.id,
        target.display(),
        bytes.len(),
        bytes.len()
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    socket.write_all(&bytes[..half]).await.expect("half the body");
    socket.shutdown().await.expect("hang up");
    drop(socket);

    // The device kept what came, and says so; the cut is an event too.
    let query = FileStatQuery { path: target.display().to_string(), upload_sha256: Some(sha.clone()) };
    eventually("the device kept half the upload", || async {
        let stat = client.file_stat(&device.id, &query).await.ok()?;
        (stat.file.received == Some(half as u64)).then_some(())
    })
    .await;
    assert!(!target.exists(), "a partial upload is not put in place");
    let cut = events(&client, &device.id, "remote.file_uploaded", 1).await;
    assert_eq!((cut[0].data["complete"].as_bool(), cut[0].data["bytes"].as_u64()), (Some(false), Some(half as u64)));

    // `baton cp` sends only the rest.
    let up =
        cli(&server.url, BOOTSTRAP, &["cp", local.to_str().expect("utf-8"), &format!("files-2:{}", target.display())]);
    assert!(up.status.success(), "stderr: {}", text(&up.stderr));
    assert!(text(&up.stdout).contains("resumed after"), "{}", text(&up.stdout));
    assert_eq!(sha256(&std::fs::read(&target).expect("in place")), sha);
    let done = events(&client, &device.id, "remote.file_uploaded", 2).await;
    let d = &done[0].data;
    assert_eq!(
        (d["offset"].as_u64(), d["bytes"].as_u64()),
        (Some(half as u64), Some((bytes.len() - half) as u64)),
        "{d}"
    );
    assert_eq!(d["complete"].as_bool(), Some(true));

    // A download read part-way and dropped: the event says it was cut.
    let mut response = client.download_file(&device.id, &target.display().to_string(), None).await.expect("download");
    let mut read = 0;
    while read < MB {
        read += response.chunk().await.expect("chunk").expect("more").len();
    }
    drop(response);
    let downloads = events(&client, &device.id, "remote.file_downloaded", 1).await;
    assert_eq!(downloads[0].data["complete"].as_bool(), Some(false), "{}", downloads[0].data);

    // Range with If-Range: the rest while the file is the same, all of it once it changed.
    let path = target.display().to_string();
    let rest = client.download_file(&device.id, &path, Some((half as u64, &sha))).await.expect("ranged");
    assert_eq!(rest.status().as_u16(), 206);
    let range = format!("bytes {half}-{}/{}", bytes.len() - 1, bytes.len());
    assert_eq!(rest.headers()["content-range"], range.as_str());
    assert_eq!(rest.bytes().await.expect("rest").as_ref(), &bytes[half..]);
    let stale = client.download_file(&device.id, &path, Some((half as u64, &"0".repeat(64)))).await.expect("whole");
    assert_eq!(stale.status().as_u16(), 200);
    assert_eq!(stale.bytes().await.expect("whole").len(), bytes.len());

    // What a cut `baton cp` leaves (a part and its SHA-256) is resumed by the next run.
    let back = here.path().join("back.bin");
    std::fs::write(here.path().join("back.bin.baton-part"), &bytes[..half]).expect("part");
    std::fs::write(here.path().join("back.bin.baton-part.sha256"), &sha).expect("part's sha");
    let before = device_events(&client, &device.id, "remote.file_downloaded").await.len();
    let down = cli(&server.url, BOOTSTRAP, &["cp", &format!("files-2:{path}"), back.to_str().expect("utf-8")]);
    assert!(down.status.success(), "stderr: {}", text(&down.stderr));
    assert!(text(&down.stdout).contains("resumed after"), "{}", text(&down.stdout));
    assert_eq!(sha256(&std::fs::read(&back).expect("downloaded")), sha);
    let last = events(&client, &device.id, "remote.file_downloaded", before + 1).await;
    let d = &last[0].data;
    assert_eq!(
        (d["offset"].as_u64(), d["bytes"].as_u64()),
        (Some(half as u64), Some((bytes.len() - half) as u64)),
        "{d}"
    );
}

#[tokio::test]
async fn a_directory_comes_down_as_tar_with_its_files_and_links() {
    let (server, client) = server();
    let allowed = tempfile::tempdir().expect("tempdir");
    let (_agent, device) = enrolled(&client, &server.url, "files-3", &files_under(allowed.path())).await;
    let tree = allowed.path().join("app");
    std::fs::create_dir_all(tree.join("conf/deep")).expect("dirs");
    std::fs::write(tree.join("a.txt"), "alpha\n").expect("file");
    std::fs::write(tree.join("conf/deep/b.bin"), random(300_000, 3)).expect("file");
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc/hostname", tree.join("link")).expect("link");

    let here = tempfile::tempdir().expect("tempdir");
    let out = here.path().join("copy");
    let down =
        cli(&server.url, BOOTSTRAP, &["cp", &format!("files-3:{}", tree.display()), out.to_str().expect("utf-8")]);
    assert!(down.status.success(), "stderr: {}", text(&down.stderr));
    assert_eq!(std::fs::read_to_string(out.join("a.txt")).expect("a.txt"), "alpha\n");
    assert_eq!(std::fs::read(out.join("conf/deep/b.bin")).expect("b.bin"), random(300_000, 3));
    #[cfg(unix)]
    assert_eq!(std::fs::read_link(out.join("link")).expect("a link, not its target").to_str(), Some("/etc/hostname"));

    let response = client.download_file(&device.id, &tree.display().to_string(), None).await.expect("tar");
    assert_eq!(response.headers()["content-type"], "application/x-tar");
    let tar = response.bytes().await.expect("tar");
    let mut names: Vec<String> = tar::Archive::new(tar.as_ref())
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").path().expect("path").display().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "conf", "conf/deep", "conf/deep/b.bin", "link"]);
}

#[tokio::test]
async fn paths_out_of_the_allow_list_files_switched_off_a_viewer_and_another_tenant_are_refused() {
    let (server, client) = server();
    let root = tempfile::tempdir().expect("tempdir");
    let (allowed, outside) = (root.path().join("allowed"), root.path().join("outside"));
    std::fs::create_dir_all(&allowed).expect("dir");
    std::fs::create_dir_all(&outside).expect("dir");
    std::fs::write(outside.join("secret"), "secret\n").expect("file");
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.join("secret"), allowed.join("escape")).expect("link");
    let (_agent, device) = enrolled(&client, &server.url, "files-4", &files_under(&allowed)).await;
    let (_off, off) = enrolled(&client, &server.url, "files-off", "").await;
    let at = |p: &Path| p.display().to_string();
    let stat = |device: &str, path: String| {
        let client = client.clone();
        let device = device.to_owned();
        async move { client.file_stat(&device, &FileStatQuery { path, upload_sha256: None }).await }
    };

    for (path, says) in [
        (format!("{}/../outside/secret", at(&allowed)), "`..` is not allowed in a path"),
        (at(&allowed.join("escape")), "is outside the allowed paths: "),
        (at(&outside.join("secret")), "is outside the allowed paths: "),
    ] {
        let (status, detail) = problem(stat(&device.id, path.clone()).await);
        assert_eq!(status, 403, "{path}: {detail}");
        assert!(detail.contains(says), "{path}: {detail}");
        let (status, detail) = problem(client.download_file(&device.id, &path, None).await);
        assert_eq!(status, 403, "{path}: {detail}");
        assert!(detail.contains(says), "{path}: {detail}");
    }
    let (status, detail) = problem(stat(&off.id, at(&allowed)).await);
    assert_eq!(status, 403);
    assert!(detail.contains("`[remote] files = true`"), "{detail}");
    let (status, detail) = problem(stat(&device.id, "relative/path".into()).await);
    assert_eq!(status, 422, "{detail}");

    // The CLI says the device's reason.
    let here = tempfile::tempdir().expect("tempdir");
    let local = here.path().join("x.txt");
    std::fs::write(&local, "x\n").expect("file");
    let up = cli(
        &server.url,
        BOOTSTRAP,
        &["cp", local.to_str().expect("utf-8"), &format!("files-4:{}", at(&outside.join("x.txt")))],
    );
    assert!(!up.status.success());
    assert!(text(&up.stderr).contains("is outside the allowed paths: "), "{}", text(&up.stderr));
    assert!(!outside.join("x.txt").exists());
    let down = cli(
        &server.url,
        BOOTSTRAP,
        &["cp", &format!("files-4:{}", at(&allowed.join("escape"))), local.to_str().expect("utf-8")],
    );
    assert!(!down.status.success());
    assert!(text(&down.stderr).contains("is outside the allowed paths: "), "{}", text(&down.stderr));
    assert_eq!(std::fs::read_to_string(&local).expect("local"), "x\n", "the local file is untouched");

    // A viewer lacks remote:files; another tenant does not see the device.
    client
        .create_user(&UserCreate {
            username: "vera".into(),
            password: "viewer-password-123".into(),
            role: Some("viewer".into()),
        })
        .await
        .expect("viewer");
    let viewer = Client::new(&server.url, None, None).expect("client");
    let session = viewer.login(None, "vera", "viewer-password-123").await.expect("login");
    let viewer = viewer.with_token(session.token);
    let other = other_tenant(&client, &server.url).await;
    let path = at(&allowed.join("new.txt"));
    let facts = FileUpload { path: path.clone(), size: 2, sha256: sha256(b"x\n"), offset: 0, mode: None };
    let body = || futures::stream::iter(vec![Ok(b"x\n".to_vec())]);
    for (who, caller, status) in [("a viewer", &viewer, 403), ("another tenant", &other, 404)] {
        let (got, detail) =
            problem(caller.file_stat(&device.id, &FileStatQuery { path: path.clone(), upload_sha256: None }).await);
        assert_eq!(got, status, "{who}: {detail}");
        let (got, detail) = problem(caller.download_file(&device.id, &path, None).await);
        assert_eq!(got, status, "{who}: {detail}");
        let (got, detail) = problem(caller.upload_file(&device.id, &facts, body()).await);
        assert_eq!(got, status, "{who}: {detail}");
        if status == 403 {
            assert!(detail.contains("remote:files"), "{who}: {detail}");
        }
    }
    assert!(!allowed.join("new.txt").exists());

    // A body that does not match its SHA-256 is refused, and nothing is left behind.
    let wrong = FileUpload { sha256: sha256(b"y\n"), ..facts };
    let (status, detail) = problem(client.upload_file(&device.id, &wrong, body()).await);
    assert_eq!(status, 422, "{detail}");
    assert!(detail.contains("SHA-256 does not match"), "{detail}");
    assert_eq!(std::fs::read_dir(&allowed).expect("dir").count(), 1, "only the link is there");
}
