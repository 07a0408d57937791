//! Browsers get error pages, API clients keep JSON errors (SPEC 12): a 401, 403 or 404 answer to
//! a request that asks for HTML (`Accept: text/html`, as a browser's navigation does) outside
//! `/api/` becomes a short page that says what happened and links to the login page, which
//! brings the person back. `fetch` and other API clients send `Accept: */*` or JSON and get the
//! JSON error of SPEC 4 unchanged.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::login::safe_next;

pub async fn html_errors(request: Request, next: Next) -> Response {
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|t| t.trim().starts_with("text/html")));
    let target = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let response = next.run(request).await;
    let status = response.status();
    if !wants_html
        || target.starts_with("/api/")
        || !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND)
    {
        return response;
    }
    page(status, &target)
}

fn page(status: StatusCode, target: &str) -> Response {
    let (title, text) = match status {
        StatusCode::NOT_FOUND => {
            ("Not found", "There is nothing here, or it is a private HUD that only its owner and viewers may see.")
        }
        StatusCode::FORBIDDEN => {
            ("Not allowed", "This page is not open to you (or not in a frame) with the key you are using.")
        }
        _ => ("Log in needed", "This page needs a key."),
    };
    let next = escape(safe_next(Some(target)));
    let code = status.as_u16();
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Flightdeck</title>
<link rel="icon" href="/favicon.ico" type="image/png">
<link rel="stylesheet" href="/assets/style.css">
</head>
<body>
<main class="error-page">
<p class="error-code">{code}</p>
<h1>{title}</h1>
<p>{text}</p>
<p class="error-links"><a id="login" href="/login?next={next}">Log in with a key</a> · <a href="/">Flightdeck</a></p>
</main>
</body>
</html>
"#
    );
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        // The relay's own stylesheet and icon, nothing else (no script at all).
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}
