//! What a crash leaves behind: `baton serve` is killed with SIGKILL in the middle of work and
//! started again on the same data directory.

mod support;

use std::path::Path;

use baton_client::Client;
use baton_proto::api::artifacts::ArtifactUpload;
use baton_testkit::eventually;
use futures::StreamExt;
use support::Server;

const BOOTSTRAP: &str = "bt_crash-test-bootstrap-token";

/// The files in `dir` with their sizes.
fn files(dir: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .map_while(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_cut_by_a_kill_leaves_no_staging_file_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let staging = data.join("artifacts/staging");
    let env = [("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP)];
    let args = ["--http-addr", "127.0.0.1:0"];
    let mut server = Server::start_in(&data, &env, &args);
    let client = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");

    // 50 MB announced; 4 MiB sent, then the client waits as if on a slow link.
    let body = futures::stream::iter((0..4).map(|_| Ok(vec![7u8; 1 << 20]))).chain(futures::stream::pending());
    let facts = ArtifactUpload { name: "firmware".into(), version: "1.0.0".into(), ..Default::default() };
    let upload = tokio::spawn(async move { client.upload_artifact(&facts, 50_000_000, body).await });
    let staged = eventually("the upload is being staged", || async {
        let staged = files(&staging);
        if staged.iter().any(|(_, size)| *size >= 1 << 20) { Ok(staged) } else { Err(format!("{staged:?}")) }
    })
    .await;

    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("the server is gone");
    upload.abort();
    assert!(!files(&staging).is_empty(), "the kill left the half upload behind: {staged:?}");
    let restarted = Server::start_in(&data, &env, &args);
    assert_eq!(files(&staging), Vec::new(), "the half upload is swept when the server starts again");
    let client = Client::new(&restarted.url, Some(BOOTSTRAP.into()), None).expect("client");
    let listed = client.artifacts(&Default::default()).await.expect("artifacts");
    assert!(listed.items.is_empty(), "nothing half-stored is listed: {:?}", listed.items);
}
