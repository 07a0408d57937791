//! `GET /login`: the page where a person pastes an owner or viewer key to get a session cookie
//! (through `POST /api/login`), then goes back to the page they came from.

use axum::extract::Query;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Only a path on this relay may be the target after login: `/x...`, not `//host` or a URL.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.chars().all(|c| c.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/",
    }
}

/// Escapes text for an HTML attribute or element.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

pub async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    let next = html_escape(safe_next(q.next.as_deref()));
    let page = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · Flightdeck</title>
<link rel="icon" href="/favicon.ico" type="image/png">
<link rel="stylesheet" href="/assets/style.css">
<style>
  body {{ font-family: system-ui, sans-serif; display: grid; place-items: center; min-height: 100vh; margin: 0; }}
  form {{ display: grid; gap: .75rem; width: min(26rem, 92vw); }}
  input {{ font: inherit; padding: .5rem; }}
  button {{ font: inherit; padding: .5rem; cursor: pointer; }}
  [role=alert] {{ color: #b91c1c; min-height: 1.2em; }}
</style>
</head>
<body>
<form id="login" data-next="{next}">
  <h1>Flightdeck</h1>
  <label for="token">Owner or viewer key</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
  <button type="submit">Log in</button>
  <p id="error" role="alert"></p>
</form>
<script>
document.getElementById("login").addEventListener("submit", async (e) => {{
  e.preventDefault();
  const form = e.currentTarget;
  const error = document.getElementById("error");
  error.textContent = "";
  try {{
    const response = await fetch("/api/login", {{
      method: "POST",
      headers: {{ "content-type": "application/json" }},
      body: JSON.stringify({{ token: document.getElementById("token").value }}),
    }});
    if (response.ok) {{
      location.assign(form.dataset.next);
      return;
    }}
    const body = await response.json().catch(() => null);
    error.textContent = body && body.error ? body.error.message : "Login failed (" + response.status + ")";
  }} catch (err) {{
    error.textContent = "The relay cannot be reached: " + err;
  }}
}});
</script>
</body>
</html>
"#
    );
    let mut response = page.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'none'"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        let cases = [
            (Some("/hud/alice/repo"), "/hud/alice/repo"),
            (Some("/"), "/"),
            (Some("//evil.example/x"), "/"),
            (Some("https://evil.example"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("javascript:alert(1)"), "/"),
            (Some("/a b"), "/"),
            (None, "/"),
        ];
        for (next, want) in cases {
            assert_eq!(safe_next(next), want, "{next:?}");
        }
        assert_eq!(html_escape("/x?a=\"<b>\"&c"), "/x?a=&quot;&lt;b&gt;&quot;&amp;c");
    }
}
