//! The console's page, embedded in the binary (crate `rust-embed`, also in debug builds): its
//! own files from `admin/ui/`, and the terminal emulator from the npm registry (see build.rs).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

#[derive(rust_embed::Embed)]
#[folder = "admin/ui/"]
struct Ui;

#[derive(rust_embed::Embed)]
#[folder = "$OUT_DIR/admin-vendor/"]
struct Vendor;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Headers every page and asset carries.
pub fn harden(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

fn serve(data: Option<rust_embed::EmbeddedFile>, path: &str) -> Response {
    let Some(f) = data else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let mut r = (
        [(header::CONTENT_TYPE, content_type(path))],
        f.data.into_owned(),
    )
        .into_response();
    harden(&mut r);
    r
}

/// `/admin` and `/admin/`.
pub async fn index() -> Response {
    serve(Ui::get("index.html"), "index.html")
}

/// `/admin/assets/{*path}`.
pub async fn asset(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    if let Some(v) = path.strip_prefix("vendor/") {
        return serve(Vendor::get(v), v);
    }
    serve(Ui::get(&path), &path)
}
