//! The demonstration payment page (issue 15 §3; docs/demo-page.md): `oneclick demo-page`, a
//! small hosted page that plays the **payment gateway** of the reference documents, so anyone
//! can see the One Click story in a browser: a new customer gets the full card form with "save
//! this card" preselected; a returning member gets the masked saved cards the engine offers, a
//! CVC2 field (none when the merchant does not ask for it), "+" for a new card and a basket to
//! delete the current card (after a confirmation).
//!
//! **A separate process, not a listener of `oneclick serve`** (docs/demo-page.md, "Why a
//! process of its own"): a gateway is another party; the page talks to oneclick only over NATS
//! `<p>.v1.gw.*` ([`gateway`]) with the gateway's NATS identity, holds no master key and opens
//! no database — a compromise of the page (which takes card numbers from browsers) reaches
//! nothing the gateway could not already reach. It also stays out of the production process
//! and out of the production docker-compose.yml.
//!
//! **No business rule here.** What is shown comes from the engine's replies: the status, the
//! save offer, `need_cvc`, `saved_card_payments` and the cards of `gw.offer`; the outcome of
//! `gw.pay`, `gw.pay_saved` and `gw.delete_card`, faults included. The page only signs orders
//! (as the merchant's shop does, R2) and turns forms into those requests.
//!
//! Invariants (docs/demo-page.md, "Threats"):
//! - off by default (`demo.listen` empty); HTTPS only; a banner on every page says it is a
//!   demonstration for the simulator's test cards, and with `demo.test_cards_only` (default on)
//!   any other card number is refused before anything is sent — the page is no oracle for
//!   testing stolen cards and takes no real card;
//! - no card number, CVC or form body is ever logged (log lines: route, outcome, time); card
//!   fields are [`SecretString`]s from the form parser on;
//! - every form that pays or deletes carries the session's CSRF token (constant-time compare)
//!   and the session cookie is `__Host-`, `Secure`, `HttpOnly`, `SameSite=Strict`;
//! - every page: a Content Security Policy with no script at all, `frame-ancestors 'none'`,
//!   `Cache-Control: no-store` (card pages are never cached), `Referrer-Policy: no-referrer`;
//!   card inputs have `autocomplete="off"`;
//! - form bodies are bounded (`MAX_FORM_BYTES`), each request by `demo.body_timeout_ms` +
//!   `service.request_timeout_ms`, connections by `demo.max_connections`, sessions by
//!   `demo.max_sessions`.
//!
//! [`SecretString`]: oneclick_actors::engine::requests::SecretString

pub mod gateway;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::{context, Environment, Value};
use oneclick_actors::engine::requests::SecretString;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::account::session::{random_token, same_token};
use super::pages::{cookie, html, with_cookie};
use crate::config::Settings;
use crate::wire::gateway::{OfferReply, PaymentReply};
use gateway::{Gateway, GatewayError, NewCard, Order};

/// Largest form body.
pub const MAX_FORM_BYTES: usize = 8 * 1024;
/// The demo page's session cookie.
pub const COOKIE: &str = "__Host-oneclick_demo";
/// A session ends this long after it began, however active.
const ABSOLUTE: Duration = Duration::from_secs(4 * 3600);

/// `[demo]`: the demonstration payment page (`oneclick demo-page`; docs/demo-page.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoSettings {
    /// HOST:PORT of its HTTPS listener; empty: `oneclick demo-page` refuses to start.
    pub listen: String,
    /// PEM certificate chain and private key of that listener (required with `listen`).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// The merchant the demo shop sells for.
    pub merchant_id: i64,
    /// A file holding that merchant's Base64 order-signature key (R2), readable by its owner only.
    pub signature_key_file: Option<PathBuf>,
    /// Currency of the demo orders.
    pub currency: String,
    /// Refuse any card number that is not one of the simulator's test cards.
    pub test_cards_only: bool,
    /// TLS handshake and request head must arrive within this long.
    pub header_timeout_ms: u64,
    /// A form body must arrive within this long.
    pub body_timeout_ms: u64,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Browser sessions kept at once (least recently used dropped beyond).
    pub max_sessions: usize,
    /// A session ends after this long without a request.
    pub session_idle_secs: u64,
}

impl Default for DemoSettings {
    fn default() -> Self {
        DemoSettings {
            listen: String::new(),
            tls_cert_file: None,
            tls_key_file: None,
            merchant_id: 452739,
            signature_key_file: None,
            currency: "RUB".into(),
            test_cards_only: true,
            header_timeout_ms: 5000,
            body_timeout_ms: 10_000,
            max_connections: 64,
            max_sessions: 1000,
            session_idle_secs: 900,
        }
    }
}

impl DemoSettings {
    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(100..=600_000).contains(&self.header_timeout_ms) {
            return Err(("demo.header_timeout_ms", "must be 100..=600000"));
        }
        if !(100..=600_000).contains(&self.body_timeout_ms) {
            return Err(("demo.body_timeout_ms", "must be 100..=600000"));
        }
        if !(1..=65_536).contains(&self.max_connections) {
            return Err(("demo.max_connections", "must be 1..=65536"));
        }
        if !(1..=1_000_000).contains(&self.max_sessions) {
            return Err(("demo.max_sessions", "must be 1..=1000000"));
        }
        if !(60..=86_400).contains(&self.session_idle_secs) {
            return Err(("demo.session_idle_secs", "must be 60..=86400"));
        }
        if self.merchant_id <= 0 {
            return Err(("demo.merchant_id", "must be a positive merchant id"));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(("demo.currency", "expected three capital letters (RUB)"));
        }
        if self.listen.is_empty() {
            return Ok(());
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(("demo.listen", "expected HOST:PORT with an IP address"));
        }
        if self.tls_cert_file.is_none() {
            return Err(("demo.tls_cert_file", "required when demo.listen is set"));
        }
        if self.tls_key_file.is_none() {
            return Err(("demo.tls_key_file", "required when demo.listen is set"));
        }
        if self.signature_key_file.is_none() {
            return Err((
                "demo.signature_key_file",
                "required when demo.listen is set",
            ));
        }
        Ok(())
    }
}

// ---- sessions --------------------------------------------------------------------------------

/// One browser's checkout.
#[derive(Clone)]
struct Checkout {
    csrf: String,
    customer_number: Option<String>,
    amount: String,
    /// The order being paid; a new one after each payment's outcome, so a double submit of one
    /// form is one order (R16) and a reload never pays twice.
    order_number: String,
    last: Option<Outcome>,
    notice: Option<String>,
    created: Instant,
    seen: Instant,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("csrf", &"[REDACTED]")
            .field("order_number", &self.order_number)
            .finish_non_exhaustive()
    }
}

/// What the result page shows (from the engine's reply only).
#[derive(Debug, Clone, Serialize)]
struct Outcome {
    payment: Option<PaymentReply>,
    error: Option<String>,
}

fn new_order_number() -> String {
    format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

struct Checkouts {
    map: Mutex<HashMap<[u8; 32], Checkout>>,
    idle: Duration,
    max: usize,
}

fn digest(id: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(id.as_bytes()).into()
}

impl Checkouts {
    fn alive(&self, c: &Checkout, now: Instant) -> bool {
        now.duration_since(c.seen) < self.idle && now.duration_since(c.created) < ABSOLUTE
    }

    /// A new checkout; its id (for the cookie only).
    fn start(&self) -> (String, Checkout) {
        let id = random_token();
        let now = Instant::now();
        let checkout = Checkout {
            csrf: random_token(),
            customer_number: None,
            amount: "10.00".into(),
            order_number: new_order_number(),
            last: None,
            notice: None,
            created: now,
            seen: now,
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, c| self.alive(c, now));
        if map.len() >= self.max {
            if let Some(oldest) = map.iter().min_by_key(|(_, c)| c.seen).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(digest(&id), checkout.clone());
        (id, checkout)
    }

    fn get(&self, id: &str) -> Option<Checkout> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = digest(id);
        if !map.get(&key).is_some_and(|c| self.alive(c, now)) {
            map.remove(&key);
            return None;
        }
        map.get_mut(&key).map(|c| {
            c.seen = now;
            c.clone()
        })
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Checkout)) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get_mut(&digest(id)) {
            change(c);
        }
    }
}

// ---- the page --------------------------------------------------------------------------------

/// The demo page's state.
pub struct Demo {
    gateway: Gateway,
    checkouts: Checkouts,
    templates: Environment<'static>,
    test_cards_only: bool,
}

fn templates() -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("demo/templates/base.html")),
        ("shop.html", include_str!("demo/templates/shop.html")),
        ("pay.html", include_str!("demo/templates/pay.html")),
        ("delete.html", include_str!("demo/templates/delete.html")),
        ("result.html", include_str!("demo/templates/result.html")),
    ] {
        env.add_template(name, source)?;
    }
    Ok(env)
}

/// The test cards the banner lists (the simulator takes all of `TEST_CARDS`).
const SHOWN_TEST_CARDS: &[&str] = &[
    "4111111111111111",
    "5555555555554444",
    "2200000000000004",
    "378282246310005",
    "4000000000000002",
    "4000000000060998",
];

/// The simulator's test cards, for the banner (number with spaces, brand, outcome).
fn test_cards() -> Vec<(String, &'static str, String)> {
    oneclick_actors::acquirer::TEST_CARDS
        .iter()
        .filter(|c| SHOWN_TEST_CARDS.contains(&c.pan))
        .map(|c| {
            let spaced = c
                .pan
                .as_bytes()
                .chunks(4)
                .map(|g| String::from_utf8_lossy(g).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            (
                spaced,
                c.brand,
                format!("{:?} {}", c.state, c.response_code),
            )
        })
        .collect()
}

/// Runs `oneclick demo-page` until `shutdown`.
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let demo = &settings.demo;
    if demo.listen.is_empty() {
        anyhow::bail!(
            "demo.listen is empty: the demonstration page is off (docs/demo-page.md); set \
             ONECLICK__DEMO__LISTEN, ONECLICK__DEMO__TLS_CERT_FILE, ONECLICK__DEMO__TLS_KEY_FILE \
             and ONECLICK__DEMO__SIGNATURE_KEY_FILE"
        );
    }
    let tls = super::listener::tls_from_files(
        "demo",
        demo.tls_cert_file.as_deref(),
        demo.tls_key_file.as_deref(),
    )?;
    let gateway = Gateway::connect(&settings).await?;
    let router = router(
        Arc::new(Demo {
            gateway,
            checkouts: Checkouts {
                map: Mutex::new(HashMap::new()),
                idle: Duration::from_secs(demo.session_idle_secs),
                max: demo.max_sessions,
            },
            templates: templates()?,
            test_cards_only: demo.test_cards_only,
        }),
        Duration::from_millis(demo.body_timeout_ms + settings.service.request_timeout_ms),
    );
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let bounds = super::listener::Bounds {
        setting: "demo.listen",
        listen: demo.listen.clone(),
        max_connections: demo.max_connections,
        head_deadline: Duration::from_millis(demo.header_timeout_ms),
    };
    let addr =
        super::listener::serve_with(bounds, tracker.clone(), tls, router, stop.clone(), || {
            tracing::warn!("demo page: connection refused, all slots taken")
        })
        .await?;
    tracing::warn!(%addr, merchant_id = demo.merchant_id, "DEMONSTRATION payment page listening (HTTPS); simulator test cards only");
    shutdown.await;
    stop.cancel();
    tracker.close();
    let grace = Duration::from_secs(settings.service.shutdown_grace_secs);
    let _ = tokio::time::timeout(grace, tracker.wait()).await;
    tracing::info!("demo page stopped");
    Ok(())
}

/// The router of the demo page.
pub fn router(demo: Arc<Demo>, deadline: Duration) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/demo/") }))
        .route("/demo", get(|| async { Redirect::to("/demo/") }))
        .route("/demo/", get(shop))
        .route("/demo/checkout", post(checkout))
        .route("/demo/pay", get(pay_page))
        .route("/demo/pay/card", post(pay_card))
        .route("/demo/pay/saved", post(pay_saved))
        .route("/demo/pay/delete", get(delete_page).post(delete_card))
        .route("/demo/result", get(result_page))
        .route("/demo/static/style.css", get(style))
        .route("/demo/static/basket.svg", get(basket))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| logged(req, next, deadline),
        ))
        .with_state(demo)
}

/// Logs a request (method, route, status, time: never a body or a query) and puts the pages'
/// guard ([`super::pages::guarded`]) around it.
async fn logged(req: Request, next: Next, deadline: Duration) -> Response {
    let started = Instant::now();
    let route = req.uri().path().to_string();
    let method = req.method().clone();
    let response = super::pages::guarded(req, next, deadline).await;
    tracing::info!(
        %method,
        route = route.as_str(),
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "demo request"
    );
    response
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("demo/templates/style.css"),
    )
        .into_response()
}

async fn basket() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        include_str!("demo/templates/basket.svg"),
    )
        .into_response()
}

fn forbidden() -> Response {
    html(
        StatusCode::FORBIDDEN,
        "The form expired: go back to the demo shop (/demo/) and try again.".into(),
    )
}

impl Demo {
    fn render(&self, name: &str, checkout: &Checkout, extra: Value) -> Response {
        let base = context! {
            csrf => checkout.csrf.clone(),
            merchant_id => self.gateway.merchant_id(),
            currency => self.gateway.currency(),
            customer => checkout.customer_number.clone(),
            amount => checkout.amount.clone(),
            notice => checkout.notice.clone(),
            test_cards => test_cards(),
        };
        match self
            .templates
            .get_template(name)
            .and_then(|t| t.render(context! { ..extra, ..base }))
        {
            Ok(body) => html(StatusCode::OK, body),
            Err(e) => {
                tracing::error!(template = name, error = %e, "demo page did not render");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }

    /// The checkout of a request's cookie.
    fn checkout(&self, headers: &HeaderMap) -> Option<(String, Checkout)> {
        let id = cookie(headers, COOKIE)?;
        self.checkouts.get(id).map(|c| (id.to_string(), c))
    }

    /// The checkout whose CSRF token matches the form's; else the answer to give.
    fn checkout_for_change(
        &self,
        headers: &HeaderMap,
        csrf: &str,
    ) -> Result<(String, Checkout), Box<Response>> {
        match self.checkout(headers) {
            Some((id, c)) if same_token(&c.csrf, csrf) => Ok((id, c)),
            _ => Err(Box::new(forbidden())),
        }
    }

    /// The order being paid; `None` before the shop step.
    fn order(checkout: &Checkout) -> Option<Order> {
        Some(Order {
            order_number: checkout.order_number.clone(),
            amount: checkout.amount.clone(),
            customer_number: checkout.customer_number.clone()?,
        })
    }

    /// Stores a payment's outcome, starts the next order and sends the browser to the result
    /// (post/redirect/get: a reload shows the result and pays nothing).
    fn finish(
        &self,
        id: &str,
        route: &str,
        outcome: Result<PaymentReply, GatewayError>,
    ) -> Response {
        let logged = match &outcome {
            Ok(p) => format!("{:?}", p.order_state),
            Err(e) => e.outcome(),
        };
        tracing::info!(
            route,
            merchant_id = self.gateway.merchant_id(),
            outcome = logged.as_str(),
            "demo payment"
        );
        let last = match outcome {
            Ok(p) => Outcome {
                payment: Some(p),
                error: None,
            },
            Err(e) => Outcome {
                payment: None,
                error: Some(error_text(&e)),
            },
        };
        self.checkouts.update(id, |c| {
            c.last = Some(last);
            c.order_number = new_order_number();
            c.notice = None;
        });
        Redirect::to("/demo/result").into_response()
    }
}

fn error_text(e: &GatewayError) -> String {
    match e {
        GatewayError::Fault(f) => format!("{} (fault {}/{})", f.detail, f.faultcode, f.faultstring),
        GatewayError::Transport(_) => "oneclick did not answer; try again".into(),
    }
}

// ---- the shop --------------------------------------------------------------------------------

async fn shop(State(demo): State<Arc<Demo>>, headers: HeaderMap) -> Response {
    match demo.checkout(&headers) {
        Some((_, c)) => demo.render("shop.html", &c, context! {}),
        None => {
            let (id, c) = demo.checkouts.start();
            with_cookie(demo.render("shop.html", &c, context! {}), COOKIE, &id, None)
        }
    }
}

#[derive(Deserialize)]
struct CheckoutForm {
    csrf: String,
    customer: String,
    amount: String,
}

async fn checkout(
    State(demo): State<Arc<Demo>>,
    headers: HeaderMap,
    Form(form): Form<CheckoutForm>,
) -> Response {
    let (id, _) = match demo.checkout_for_change(&headers, &form.csrf) {
        Ok(c) => c,
        Err(refused) => return *refused,
    };
    // As typed: the engine validates customer number (R1) and amount.
    demo.checkouts.update(&id, |c| {
        c.customer_number = Some(form.customer.trim().to_string());
        c.amount = form.amount.trim().to_string();
        c.order_number = new_order_number();
        c.last = None;
        c.notice = None;
    });
    Redirect::to("/demo/pay").into_response()
}

// ---- the payment page ------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct PayQuery {
    #[serde(default)]
    new: Option<String>,
}

async fn pay_page(
    State(demo): State<Arc<Demo>>,
    headers: HeaderMap,
    Query(q): Query<PayQuery>,
) -> Response {
    let Some((_, checkout)) = demo.checkout(&headers) else {
        return Redirect::to("/demo/").into_response();
    };
    let Some(order) = Demo::order(&checkout) else {
        return Redirect::to("/demo/").into_response();
    };
    let offer: Result<OfferReply, GatewayError> = demo.gateway.offer(&order).await;
    let (offer, error) = match offer {
        Ok(o) => (Some(o), None),
        Err(e) => (None, Some(error_text(&e))),
    };
    // The engine's answer decides: saved cards are shown when it offers some and paying with
    // them is possible; "+" (new=1) shows the full form beside them.
    let saved = offer
        .as_ref()
        .is_some_and(|o| o.saved_card_payments && !o.cards.is_empty());
    let new_card = !saved || q.new.is_some();
    demo.render(
        "pay.html",
        &checkout,
        context! {
            offer => Value::from(minijinja::value::Serde(&offer)),
            saved,
            new_card,
            error,
            order_number => checkout.order_number.clone(),
        },
    )
}

#[derive(Deserialize)]
struct CardForm {
    csrf: String,
    number: SecretString,
    expire_month: String,
    expire_year: String,
    holder: String,
    #[serde(default)]
    cvc: Option<SecretString>,
    /// Present when the page showed the save offer.
    #[serde(default)]
    offered: Option<String>,
    /// The checkbox: present when ticked.
    #[serde(default)]
    save: Option<String>,
}

/// Digits only (spaces and dashes typed for readability dropped); anything else is left for
/// the engine to refuse.
fn card_digits(typed: &SecretString) -> SecretString {
    SecretString::new(
        typed
            .expose()
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .collect::<String>(),
    )
}

fn is_test_card(number: &SecretString) -> bool {
    oneclick_actors::acquirer::TEST_CARDS
        .iter()
        .any(|c| same_token(c.pan, number.expose()))
}

async fn pay_card(
    State(demo): State<Arc<Demo>>,
    headers: HeaderMap,
    Form(form): Form<CardForm>,
) -> Response {
    let (id, checkout) = match demo.checkout_for_change(&headers, &form.csrf) {
        Ok(c) => c,
        Err(refused) => return *refused,
    };
    let Some(order) = Demo::order(&checkout) else {
        return Redirect::to("/demo/").into_response();
    };
    let number = card_digits(&form.number);
    if demo.test_cards_only && !is_test_card(&number) {
        tracing::info!(
            route = "/demo/pay/card",
            outcome = "refused_not_a_test_card",
            "demo payment"
        );
        demo.checkouts.update(&id, |c| {
            c.notice = Some(
                "This demonstration takes only the simulator's test cards listed below.".into(),
            )
        });
        return Redirect::to("/demo/pay?new=1").into_response();
    }
    // The customer's answer to the save offer; not asked, no answer (the engine decides).
    let save = form.offered.is_some().then_some(form.save.is_some());
    let card = NewCard {
        number,
        expire_month: form.expire_month.trim().to_string(),
        expire_year: form.expire_year.trim().to_string(),
        holder: form.holder.trim().to_string(),
        cvc: form.cvc.filter(|c| !c.expose().is_empty()),
    };
    let outcome = demo.gateway.pay(&order, card, save).await;
    demo.finish(&id, "/demo/pay/card", outcome)
}

#[derive(Deserialize)]
struct SavedForm {
    csrf: String,
    token: String,
    #[serde(default)]
    cvc: Option<SecretString>,
}

async fn pay_saved(
    State(demo): State<Arc<Demo>>,
    headers: HeaderMap,
    Form(form): Form<SavedForm>,
) -> Response {
    let (id, checkout) = match demo.checkout_for_change(&headers, &form.csrf) {
        Ok(c) => c,
        Err(refused) => return *refused,
    };
    let Some(order) = Demo::order(&checkout) else {
        return Redirect::to("/demo/").into_response();
    };
    let cvc = form.cvc.filter(|c| !c.expose().is_empty());
    let outcome = demo.gateway.pay_saved(&order, &form.token, cvc).await;
    demo.finish(&id, "/demo/pay/saved", outcome)
}

#[derive(Debug, Default, Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    token: String,
}

/// The basket's confirmation: the card (as the engine offers it) and "delete" / "keep".
async fn delete_page(
    State(demo): State<Arc<Demo>>,
    headers: HeaderMap,
    Query(q): Query<DeleteQuery>,
) -> Response {
    let Some((_, checkout)) = demo.checkout(&headers) else {
        return Redirect::to("/demo/").into_response();
    };
    let Some(order) = Demo::order(&checkout) else {
        return Redirect::to("/demo/").into_response();
    };
    let card = match demo.gateway.offer(&order).await {
        Ok(offer) => offer.cards.into_iter().find(|c| c.token == q.token),
        Err(_) => None,
    };
    let Some(card) = card else {
        return Redirect::to("/demo/pay").into_response();
    };
    demo.render(
        "delete.html",
        &checkout,
        context! {
            card => Value::from(minijinja::value::Serde(&card)),
            // One id per rendered confirmation: a double submit is one deletion (R16).
            command_id => format!("demo-{}", uuid::Uuid::new_v4().simple()),
        },
    )
}

#[derive(Deserialize)]
struct DeleteForm {
    csrf: String,
    token: String,
    command_id: String,
}

async fn delete_card(
    State(demo): State<Arc<Demo>>,
    headers: HeaderMap,
    Form(form): Form<DeleteForm>,
) -> Response {
    let (id, checkout) = match demo.checkout_for_change(&headers, &form.csrf) {
        Ok(c) => c,
        Err(refused) => return *refused,
    };
    let Some(customer) = checkout.customer_number.clone() else {
        return Redirect::to("/demo/").into_response();
    };
    let done = demo
        .gateway
        .delete_card(&customer, &form.token, &form.command_id)
        .await;
    let outcome = match &done {
        Ok(_) => "removed".to_string(),
        Err(e) => e.outcome(),
    };
    tracing::info!(
        route = "/demo/pay/delete",
        merchant_id = demo.gateway.merchant_id(),
        outcome = outcome.as_str(),
        "demo card deletion"
    );
    demo.checkouts.update(&id, |c| {
        c.notice = Some(match &done {
            Ok(r) => r.message.clone(),
            Err(e) => error_text(e),
        })
    });
    Redirect::to("/demo/pay").into_response()
}

async fn result_page(State(demo): State<Arc<Demo>>, headers: HeaderMap) -> Response {
    let Some((_, checkout)) = demo.checkout(&headers) else {
        return Redirect::to("/demo/").into_response();
    };
    let Some(last) = checkout.last.clone() else {
        return Redirect::to("/demo/pay").into_response();
    };
    let approved = last
        .payment
        .as_ref()
        .is_some_and(|p| p.order_state == oneclick_actors::domain::OrderState::Approved);
    demo.render(
        "result.html",
        &checkout,
        context! { last => Value::from(minijinja::value::Serde(&last)), approved },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_typed_with_spaces_are_test_cards_and_others_are_not() {
        assert!(is_test_card(&card_digits(&SecretString::new(
            "4111 1111 1111 1111"
        ))));
        assert!(is_test_card(&card_digits(&SecretString::new(
            "5555-5555-5555-4444"
        ))));
        assert!(!is_test_card(&card_digits(&SecretString::new(
            "4111111111111112"
        ))));
        assert!(!is_test_card(&SecretString::new("")));
    }

    #[test]
    fn the_defaults_are_off_and_valid_and_listen_needs_files() {
        let d = DemoSettings::default();
        assert!(d.listen.is_empty() && d.test_cards_only);
        assert_eq!(d.validate(), Ok(()));
        let on = DemoSettings {
            listen: "127.0.0.1:8444".into(),
            ..DemoSettings::default()
        };
        assert_eq!(on.validate().err().map(|e| e.0), Some("demo.tls_cert_file"));
    }

    #[test]
    fn a_checkout_debug_shows_no_csrf_token() {
        let checkouts = Checkouts {
            map: Mutex::new(HashMap::new()),
            idle: Duration::from_secs(60),
            max: 2,
        };
        let (_, c) = checkouts.start();
        assert!(!format!("{c:?}").contains(&c.csrf));
    }

    #[test]
    fn every_template_parses() {
        assert!(templates().is_ok());
    }
}
