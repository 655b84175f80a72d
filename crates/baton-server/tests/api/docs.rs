//! The browsable API docs, health and metrics endpoints: served from the binary, no internet.

use crate::support::{raw, spawn_app};

#[tokio::test]
async fn the_docs_page_and_all_its_assets_come_from_the_server() {
    let app = spawn_app().await;
    let page = raw().get(format!("{}/api/docs/", app.url)).send().await.expect("docs");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "the docs page is Swagger UI");
    let assets: Vec<&str> = html.split(['"', '\'']).filter(|s| s.ends_with(".js") || s.ends_with(".css")).collect();
    assert!(assets.len() >= 4, "assets found: {assets:?}");
    for asset in assets {
        assert!(!asset.contains("://"), "{asset} is loaded from elsewhere");
        let url = format!("{}/api/docs/{}", app.url, asset.trim_start_matches("./"));
        let response = raw().get(&url).send().await.expect("asset");
        assert_eq!(response.status(), 200, "{url}");
        let text = response.text().await.expect("asset body");
        if asset.contains("initializer") {
            assert!(text.contains("/api/v1/openapi.json"), "the page loads our document");
            assert!(
                text.contains("\"validatorUrl\": \"none\"") || text.contains("\"validatorUrl\":\"none\""),
                "no online validator badge"
            );
        }
    }
}

#[tokio::test]
async fn health_readiness_and_metrics_answer_without_credentials() {
    let app = spawn_app().await;
    let get = |path: &'static str| {
        let url = format!("{}{path}", app.url);
        async move { raw().get(url).send().await.expect("send") }
    };
    assert_eq!(get("/healthz").await.status(), 200);
    assert_eq!(get("/readyz").await.text().await.expect("body"), "ready");
    app.admin.me().await.expect("one request to count");
    let metrics = get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains("baton_http_requests_total{method=\"GET\",route=\"/api/v1/me\",status=\"200\"}"),
        "{metrics}"
    );
}
