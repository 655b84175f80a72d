//! The console's files, embedded at compile time so the console works on a network without
//! internet access: our own script and style, and the vendored libraries (see
//! `assets/vendor/VERSIONS` for their versions and hashes).

use axum::{
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

const FILES: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/app.js")),
    ("chart.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/chart.js")),
    ("session.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/session.js")),
    ("terminal.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/terminal.js")),
    ("player.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/player.js")),
    ("logs.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/logs.js")),
    ("files.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/files.js")),
    ("screen.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/screen.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../assets/app.css")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../../assets/favicon.svg")),
    ("vendor/htmx.min.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/vendor/htmx.min.js")),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/uPlot.iife.min.js"),
    ),
    ("vendor/uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../../assets/vendor/uPlot.min.css")),
    ("vendor/xterm.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/vendor/xterm.js")),
    ("vendor/xterm.css", "text/css; charset=utf-8", include_bytes!("../../assets/vendor/xterm.css")),
    ("vendor/addon-fit.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/vendor/addon-fit.js")),
    ("vendor/novnc-rfb.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/vendor/novnc-rfb.js")),
];

pub(super) async fn serve(Path(path): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, bytes)) => {
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "public, max-age=3600")], *bytes)
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
