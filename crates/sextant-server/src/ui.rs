//! The web UI, embedded in the binary (built from `ui/` by `build.rs`): `GET /` and
//! `GET /assets/{file}`. The page signs in with an API token kept in the browser tab's session
//! storage and sent as a Bearer header, so no cookie exists for a cross-site request to ride
//! on. Every answer carries the security headers: a content security policy allowing only this
//! origin's scripts and styles (no inline script), frame denial, no content sniffing, no
//! referrer.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
                   form-action 'self'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str, immutable: bool) -> Response {
    let Some((_, bytes)) = ASSETS.iter().find(|(p, _)| *p == path) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut response = (*bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            // Vite names assets by their content hash.
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

pub async fn index() -> Response {
    serve("/index.html", false)
}

pub async fn asset(Path(file): Path<String>) -> Response {
    serve(&format!("/assets/{file}"), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_embedded_with_its_security_headers() {
        let response = serve("/index.html", false);
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(
            serve("/assets/../../etc/passwd", true).status(),
            StatusCode::NOT_FOUND
        );
        // The built page loads only files that are embedded, and has no inline script.
        let page = std::str::from_utf8(ASSETS.iter().find(|(p, _)| *p == "/index.html").unwrap().1)
            .unwrap();
        for src in page
            .split("src=\"")
            .skip(1)
            .chain(page.split("href=\"").skip(1))
        {
            let path = src.split('"').next().unwrap();
            if path.starts_with("data:") {
                continue;
            }
            assert!(
                ASSETS.iter().any(|(p, _)| *p == path),
                "{path} is not embedded"
            );
        }
        assert!(!page.contains("<script>"), "no inline script");
    }
}
