//! The original HTTP web services, answered by the NATS merchant surface's own dispatch.
//!
//! | URL (POST) | what | NATS twin |
//! |---|---|---|
//! | `/pay/oneclick/v1/token.cfm` | token list | `<p>.v1.merchant.<id>.token.list` |
//! | `/pay/oneclick/v1/rem_token.cfm` | token removal | `<p>.v1.merchant.<id>.token.remove` |
//! | `/pay/tokenpay.cfm` | Token Pay (R14) | `<p>.v1.merchant.<id>.token.pay` |
//!
//! A request's merchant is the body's `merchant.merchant_id` (there is no subject to name it);
//! the body then goes, bytes unchanged, to [`merchant::handle`] with that id and the login source
//! of the client's address — so parsing, credentials, lockout, tenant isolation, the engine
//! command and the fault table are the NATS surface's, not a copy.
//!
//! HTTP status: 200 for every answer of the dispatch, faults included (the original's clients
//! read the body's `fault`); 413 (fault 1/4) for a body over `service.max_request_bytes`, 408
//! (fault 9/2) for a body slower than `web.body_timeout_ms`, 400 (fault 1/1) for a broken
//! body stream, 404/405 for other URLs and methods. Every answer carries `X-Request-Id`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use futures::StreamExt as _;
use oneclick_actors::engine::merchants::LoginSource;
use oneclick_actors::fault::{Fault, Language};
use serde::Deserialize;

use super::listener::Peer;
use crate::config::WebSettings;
use crate::subjects::MerchantEndpoint;
use crate::surfaces::{fault_bytes, merchant, Context};
use crate::wire::merchant::MerchantAuth;
use crate::wire::sniff_language;

/// One URL of the web services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub path: &'static str,
    pub endpoint: MerchantEndpoint,
    /// Endpoint label in metrics (`oneclick_requests_total{endpoint=…}`).
    pub name: &'static str,
}

/// Every URL served (all `POST`); docs/openapi.yaml lists exactly these (a test checks it).
pub const ROUTES: &[Route] = &[
    Route {
        path: "/pay/oneclick/v1/token.cfm",
        endpoint: MerchantEndpoint::TokenList,
        name: "http_token_list",
    },
    Route {
        path: "/pay/oneclick/v1/rem_token.cfm",
        endpoint: MerchantEndpoint::TokenRemove,
        name: "http_token_remove",
    },
    Route {
        path: "/pay/tokenpay.cfm",
        endpoint: MerchantEndpoint::TokenPay,
        name: "http_token_pay",
    },
];

/// The router of the web services.
pub fn router(ctx: Arc<Context>) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        router = router.route(
            route.path,
            post(
                move |State(ctx): State<Arc<Context>>,
                      Extension(peer): Extension<Peer>,
                      headers: HeaderMap,
                      body: Body| async move {
                    call(ctx, route, peer, headers, body).await
                },
            ),
        );
    }
    router.fallback(not_found).with_state(ctx)
}

async fn not_found() -> Response {
    with_headers(StatusCode::NOT_FOUND, Vec::new(), &new_request_id())
}

/// Why a body was not read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyError {
    TooLarge,
    TooSlow,
    Broken,
}

impl BodyError {
    fn answer(self) -> (StatusCode, Fault) {
        match self {
            BodyError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, Fault::RequestTooLarge),
            BodyError::TooSlow => (StatusCode::REQUEST_TIMEOUT, Fault::Timeout),
            BodyError::Broken => (StatusCode::BAD_REQUEST, Fault::MalformedRequest),
        }
    }
}

/// Reads at most `max` bytes of body within `deadline`. A declared length over `max` is refused
/// before a byte of the body is read.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    deadline: Duration,
) -> Result<Vec<u8>, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let data = chunk.map_err(|_| BodyError::Broken)?;
            if bytes.len() + data.len() > max {
                return Err(BodyError::TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
        Ok(bytes)
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or(Err(BodyError::TooSlow))
}

/// The merchant a body names (`merchant.merchant_id`, string or number); 0 when it names none,
/// and then the dispatch's own parse of the same bytes answers the fault.
fn merchant_of(bytes: &[u8]) -> i64 {
    #[derive(Deserialize)]
    struct Probe {
        merchant: MerchantAuth,
    }
    serde_json::from_slice::<Probe>(bytes)
        .map(|p| p.merchant.merchant_id)
        .unwrap_or(0)
}

/// The client's address, as far as it can be trusted (the login source of lockout and throttle,
/// docs/security/login.md): the TCP peer's address; for a peer listed in `web.trusted_proxies`,
/// the last `X-Forwarded-For` address (the one that proxy appended). Any other
/// `X-Forwarded-For` is the client's own words: ignored.
pub fn client_address(web: &WebSettings, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let peer_ip = peer.ip().to_canonical();
    if web
        .trusted_proxies
        .iter()
        .any(|p| p.to_canonical() == peer_ip)
    {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        if let Some(client) = forwarded {
            return client.to_canonical();
        }
    }
    peer_ip
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Serves one request of `route`: body under its limits, then the merchant dispatch under the
/// request deadline, in a tracked task (a payment started is finished and stored even if the
/// client goes away, as over NATS).
async fn call(
    ctx: Arc<Context>,
    route: &'static Route,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let request_id = new_request_id();
    let max = ctx.settings.service.max_request_bytes;
    let body_deadline = Duration::from_millis(ctx.settings.web.body_timeout_ms);
    let (status, reply, outcome, merchant_id) = match read_body(&headers, body, max, body_deadline)
        .await
    {
        Err(e) => {
            let (status, fault) = e.answer();
            (status, fault_bytes(fault, Language::En), fault.name(), 0)
        }
        Ok(bytes) => {
            let merchant_id = merchant_of(&bytes);
            let source = LoginSource::Address(client_address(&ctx.settings.web, peer.0, &headers));
            let deadline = Duration::from_millis(ctx.settings.service.request_timeout_ms);
            let work = {
                let ctx = ctx.clone();
                let bytes = bytes.clone();
                ctx.tracker.clone().spawn(async move {
                    merchant::handle(&ctx, route.endpoint, merchant_id, &source, &bytes).await
                })
            };
            let reply = match tokio::time::timeout(deadline, work).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(_)) => Err(Fault::Internal),
                Err(_) => Err(Fault::Timeout),
            };
            let outcome = match &reply {
                Ok(_) => "ok",
                Err(f) => f.name(),
            };
            let reply = reply.unwrap_or_else(|f| fault_bytes(f, sniff_language(&bytes)));
            (StatusCode::OK, reply, outcome, merchant_id)
        }
    };
    let elapsed = started.elapsed();
    ctx.metrics.observe_request(route.name, outcome, elapsed);
    // Never the body, never a header value: ids, route, outcome and time only.
    tracing::info!(
        request_id = %request_id,
        route = route.path,
        merchant_id,
        status = status.as_u16(),
        outcome,
        elapsed_ms = elapsed.as_millis() as u64,
        "web request"
    );
    with_headers(status, reply, &request_id)
}

/// A JSON answer with the headers every answer carries.
fn with_headers(status: StatusCode, body: Vec<u8>, request_id: &str) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(id) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append(
                "x-forwarded-for",
                HeaderValue::from_str(v).unwrap_or_else(|_| unreachable!()),
            );
        }
        h
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn forwarded_for_from_an_untrusted_peer_is_ignored() {
        let web = WebSettings::default();
        let source = client_address(&web, addr("10.0.0.9:5000"), &headers(&["1.2.3.4"]));
        assert_eq!(source, ip("10.0.0.9"));
    }

    #[test]
    fn a_trusted_proxy_names_the_address_it_appended_last() {
        let web = WebSettings {
            trusted_proxies: vec![ip("10.0.0.1")],
            ..WebSettings::default()
        };
        // The client wrote "6.6.6.6" itself; the proxy appended the address it saw.
        let source = client_address(
            &web,
            addr("10.0.0.1:443"),
            &headers(&["6.6.6.6, 203.0.113.7"]),
        );
        assert_eq!(source, ip("203.0.113.7"));
        // A proxy that sent no (or a broken) header: the proxy itself is the source.
        let source = client_address(&web, addr("10.0.0.1:443"), &headers(&["not an address"]));
        assert_eq!(source, ip("10.0.0.1"));
    }

    #[test]
    fn ipv4_mapped_peers_count_as_their_ipv4_address() {
        let web = WebSettings::default();
        let source = client_address(&web, addr("[::ffff:192.0.2.1]:1"), &HeaderMap::new());
        assert_eq!(source, ip("192.0.2.1"));
    }

    #[test]
    fn merchant_id_is_read_as_string_or_number_and_zero_when_absent() {
        assert_eq!(
            merchant_of(br#"{"merchant":{"merchant_id":"452739","login":"a","password":"b"}}"#),
            452739
        );
        assert_eq!(
            merchant_of(br#"{"merchant":{"merchant_id":452739,"login":"a","password":"b"}}"#),
            452739
        );
        assert_eq!(
            merchant_of(br#"{"merchant":{"login":"a","password":"b"}}"#),
            0
        );
        assert_eq!(merchant_of(b"not json"), 0);
    }
}
