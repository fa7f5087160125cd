//! What the server-rendered pages share (the personal account, [`super::account`], and the demo
//! payment page, [`super::demo`]): cookies, HTML answers, and the guard every page goes through
//! — a deadline for the whole request and the security headers on every answer.
//!
//! The headers: a Content Security Policy that lets no script run at all (the pages need none),
//! forbids framing and posts to other origins; `X-Frame-Options: DENY`; `Referrer-Policy:
//! no-referrer` (no URL leaves with a link); `Cache-Control: no-store` (nothing — a card page
//! least of all — stays in a cache); `nosniff`; HSTS.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Every page's policy. No script may run: the pages need none.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Bounds a request's time and puts the security headers on its answer.
pub async fn guarded(req: Request, next: Next, deadline: Duration) -> Response {
    let mut response = match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(r) => r,
        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    };
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The value of cookie `name` in a request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` of a secure, script-proof, same-site-only cookie for the whole host.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> (header::HeaderName, String) {
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    (
        header::SET_COOKIE,
        format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}"),
    )
}

/// Appends the `Set-Cookie` of [`set_cookie`] to `response`.
pub fn with_cookie(
    mut response: Response,
    name: &str,
    value: &str,
    max_age: Option<u64>,
) -> Response {
    let (header_name, value) = set_cookie(name, value, max_age);
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header_name, v);
    }
    response
}

/// An HTML answer.
pub fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}
