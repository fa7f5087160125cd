//! The merchant's personal account (issue 15 §2; docs/account.md): server-rendered pages on
//! the web listener under `/account/`, for the merchant's personal-account users
//! (`oneclick admin account-user`), separate from its web-service logins.
//!
//! Pages: sign-in; the One Click tab (members with status, saved cards, first and last payment
//! dates, successful payments; search by customer number; keyset pagination); a customer's page
//! (masked cards, Deny set/clear, delete a card); the merchant's One Click settings, read-only.
//! RU and EN.
//!
//! **No business rule here.** Sign-in is [`Engine::authenticate_account`] (the web services'
//! throttle, lockout and argon2 bound, with `account:<address>` sources); reads are the
//! engine's personal-account view ([`Engine::list_customers`], the NATS `customers.list`
//! command); changes are the engine commands NATS uses ([`Engine::set_status`],
//! [`Engine::delete_card`]) with the actor `account:<merchant>:<login>` in the audit trail and a
//! `command_id` per rendered form, so a double submit is applied once (R16). This module only
//! turns forms into those calls and their results into HTML.
//!
//! Invariants:
//! - every change is a POST with the session's CSRF token (constant-time compare) and a
//!   `SameSite=Strict` session cookie ([`session`]); the sign-in form has a token of its own
//!   (double submit with a `__Host-` cookie), so nobody signs a browser into another account;
//! - every page has a strict Content Security Policy with no script at all (`default-src
//!   'none'`, styles only from `/account/static/`), `frame-ancestors 'none'`, no caching;
//! - templates auto-escape (minijinja, `.html`), so a customer number or holder name cannot
//!   inject markup; no card number is ever shown but masked (BIN6 + last 4, R9);
//! - form bodies are bounded (16 KiB) and the whole request has `web.body_timeout_ms` +
//!   `service.request_timeout_ms`; nothing of a form (passwords) is logged.
//!
//! [`Engine::authenticate_account`]: oneclick_actors::Engine::authenticate_account
//! [`Engine::list_customers`]: oneclick_actors::Engine::list_customers
//! [`Engine::set_status`]: oneclick_actors::Engine::set_status
//! [`Engine::delete_card`]: oneclick_actors::Engine::delete_card

pub mod session;
pub mod texts;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use minijinja::{context, Environment, Value};
use oneclick_actors::engine::merchants::LoginSource;
use oneclick_actors::engine::replies::AccountCustomer;
use oneclick_actors::engine::requests::{
    AuditActor, Credentials, DeleteCardRequest, ListCustomersRequest, SecretString,
    SetStatusRequest,
};
use oneclick_actors::fault::{Fault, Language};
use serde::{Deserialize, Serialize};

use super::listener::Peer;
use super::pages::{cookie, html, with_cookie};
use super::services::client_address;
use crate::surfaces::Context;
use session::{random_token, same_token, Session, Sessions};

/// Customers on one page of the One Click tab.
pub const PAGE_SIZE: i64 = 50;
/// Largest form body.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// The sign-in form's own CSRF cookie (double submit).
const LOGIN_COOKIE: &str = "__Host-oneclick_signin";

/// The personal account's state: the service context, sessions, templates.
pub struct Account {
    ctx: Arc<Context>,
    sessions: Sessions,
    templates: Environment<'static>,
}

fn templates() -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("account/templates/base.html")),
        ("login.html", include_str!("account/templates/login.html")),
        (
            "customers.html",
            include_str!("account/templates/customers.html"),
        ),
        (
            "customer.html",
            include_str!("account/templates/customer.html"),
        ),
        (
            "settings.html",
            include_str!("account/templates/settings.html"),
        ),
    ] {
        env.add_template(name, source)?;
    }
    Ok(env)
}

/// The router of `/account/…`.
pub fn router(ctx: Arc<Context>) -> anyhow::Result<Router> {
    let web = &ctx.settings.web;
    let account = Arc::new(Account {
        sessions: Sessions::new(Duration::from_secs(web.session_idle_secs), web.max_sessions),
        templates: templates()?,
        ctx: ctx.clone(),
    });
    let deadline =
        Duration::from_millis(web.body_timeout_ms + ctx.settings.service.request_timeout_ms);
    Ok(Router::new()
        .route(
            "/account",
            get(|| async { Redirect::to("/account/customers") }),
        )
        .route(
            "/account/",
            get(|| async { Redirect::to("/account/customers") }),
        )
        .route("/account/login", get(login_page).post(login))
        .route("/account/logout", post(logout))
        .route("/account/customers", get(customers))
        .route("/account/customer", get(customer))
        .route("/account/customer/status", post(set_status))
        .route("/account/customer/delete-card", post(delete_card))
        .route("/account/settings", get(settings))
        .route("/account/static/style.css", get(style))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| super::pages::guarded(req, next, deadline),
        ))
        .with_state(account))
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("account/templates/style.css"),
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

fn language_of(raw: Option<&str>) -> Option<Language> {
    raw.and_then(Language::parse)
}

/// A serde value for the templates.
fn serde_value<T: Serialize>(value: T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

impl Account {
    /// Renders `name` with the layout's values (language, words, session) and `extra`.
    fn render(
        &self,
        name: &str,
        language: Language,
        session: Option<&Session>,
        extra: Value,
    ) -> Response {
        let lang = if language == Language::Ru { "ru" } else { "en" };
        let base = context! {
            lang,
            t => texts::texts(language),
            signed_in => session.is_some(),
            merchant_id => session.map(|s| s.merchant_id),
            login => session.map(|s| s.login.clone()),
            csrf => session.map(|s| s.csrf.clone()),
            totp => session.is_some_and(|s| s.totp),
        };
        let rendered = self
            .templates
            .get_template(name)
            .and_then(|t| t.render(context! { ..extra, ..base }));
        match rendered {
            Ok(body) => html(StatusCode::OK, body),
            Err(e) => {
                tracing::error!(template = name, error = %e, "account page did not render");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }

    /// The signed-in session of a request (its language switched when `?lang=` says so).
    fn session(&self, headers: &HeaderMap, lang: Option<&str>) -> Option<Session> {
        let id = cookie(headers, session::COOKIE)?;
        if let Some(language) = language_of(lang) {
            self.sessions.set_language(id, language);
        }
        self.sessions.get(id)
    }

    /// A session whose CSRF token matches the form's; else the answer to give.
    fn session_for_change(
        &self,
        headers: &HeaderMap,
        csrf: &str,
    ) -> Result<Session, Box<Response>> {
        let Some(session) = self.session(headers, None) else {
            return Err(Box::new(Redirect::to("/account/login").into_response()));
        };
        if !same_token(&session.csrf, csrf) {
            let body = texts::texts(session.language)["forbidden"].to_string();
            return Err(Box::new(html(StatusCode::FORBIDDEN, body)));
        }
        Ok(session)
    }

    /// The second factor of a change ([`Engine::confirm_account_change`]): for a user enrolled
    /// in TOTP, a fresh code; else the customer's page again saying the change was refused
    /// (nothing changed; the failure counted by the sign-in lockout of this address).
    ///
    /// [`Engine::confirm_account_change`]: oneclick_actors::Engine::confirm_account_change
    async fn confirm_change(
        &self,
        session: &Session,
        code: &SecretString,
        peer: Peer,
        headers: &HeaderMap,
        number: &str,
    ) -> Result<(), Box<Response>> {
        let source = LoginSource::Account(client_address(&self.ctx.settings.web, peer.0, headers));
        let confirmed = self
            .ctx
            .engine
            .confirm_account_change(session.merchant_id, &session.login, Some(code), &source)
            .await;
        let Err(e) = confirmed else {
            return Ok(());
        };
        let fault = crate::surfaces::to_fault("account_code", session.merchant_id, e);
        tracing::info!(
            merchant_id = session.merchant_id,
            login = ?session.login,
            fault = fault.name(),
            "personal account: change refused for its one-time code"
        );
        let t = texts::texts(session.language);
        let message = match fault {
            Fault::AuthenticationFailed => t["code_refused"],
            other => other.detail(session.language),
        };
        Err(Box::new(
            customer_page_with(self, session, number, Some(message)).await,
        ))
    }
}

// ---- sign-in ---------------------------------------------------------------------------------

async fn login_page(State(account): State<Arc<Account>>, Query(q): Query<LangQuery>) -> Response {
    let language = language_of(q.lang.as_deref()).unwrap_or_default();
    login_form(&account, language, "", "", None)
}

fn login_form(
    account: &Account,
    language: Language,
    merchant: &str,
    login: &str,
    error: Option<&str>,
) -> Response {
    let token = random_token();
    let page = account.render(
        "login.html",
        language,
        None,
        context! { csrf => token.clone(), merchant_field => merchant, login_field => login, error },
    );
    with_cookie(page, LOGIN_COOKIE, &token, Some(3600))
}

#[derive(Deserialize)]
struct LoginForm {
    merchant_id: String,
    login: String,
    password: SecretString,
    /// The one-time code (TOTP), needed when the user is enrolled; ignored otherwise.
    #[serde(default)]
    code: SecretString,
    csrf: String,
    #[serde(default)]
    lang: Option<String>,
}

async fn login(
    State(account): State<Arc<Account>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let language = language_of(form.lang.as_deref()).unwrap_or_default();
    let t = texts::texts(language);
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_token(expected, &form.csrf) {
        return login_form(
            &account,
            language,
            &form.merchant_id,
            &form.login,
            Some(t["forbidden"]),
        );
    }
    let fail = |fault: Fault| {
        login_form(
            &account,
            language,
            &form.merchant_id,
            &form.login,
            Some(fault.detail(language)),
        )
    };
    let Ok(merchant_id) = form.merchant_id.trim().parse::<i64>() else {
        return fail(Fault::UnknownMerchant);
    };
    let credentials = Credentials {
        merchant_id,
        login: form.login.clone(),
        password: form.password.clone(),
    };
    let ctx = &account.ctx;
    let source = LoginSource::Account(client_address(&ctx.settings.web, peer.0, &headers));
    let signed_in = ctx
        .engine
        .authenticate_account(&credentials, Some(&form.code), &source)
        .await;
    let totp = match signed_in {
        Ok(signed_in) => signed_in.totp,
        Err(e) => {
            let fault = crate::surfaces::to_fault("account_login", merchant_id, e);
            // An unknown merchant answers as a wrong password: the page tells nothing more.
            let fault = if fault == Fault::UnknownMerchant {
                Fault::AuthenticationFailed
            } else {
                fault
            };
            return fail(fault);
        }
    };
    let id = account
        .sessions
        .start(merchant_id, &form.login, language, totp);
    tracing::info!(merchant_id, login = ?form.login, totp, "personal account: signed in");
    let response = Redirect::to("/account/customers").into_response();
    let response = with_cookie(response, session::COOKIE, &id, None);
    with_cookie(response, LOGIN_COOKIE, "", Some(0))
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(account): State<Arc<Account>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = account.session_for_change(&headers, &form.csrf) {
        return *refused;
    }
    if let Some(id) = cookie(&headers, session::COOKIE) {
        account.sessions.end(id);
    }
    with_cookie(
        Redirect::to("/account/login").into_response(),
        session::COOKIE,
        "",
        Some(0),
    )
}

// ---- the One Click tab -----------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: String,
    after: Option<String>,
    lang: Option<String>,
}

/// One row of the One Click tab (presentation of the engine's view: counts and dates only).
#[derive(Debug, Serialize)]
struct Row {
    number: String,
    status: String,
    cards: usize,
    first_payment: String,
    last_payment: String,
    payments: i64,
}

impl Row {
    fn of(c: &AccountCustomer) -> Row {
        let live = c.cards.iter().filter(|k| k.state != "deleted");
        // A card is saved by its first successful payment (R5): the earliest saving is the
        // customer's first One Click payment.
        let first = c.cards.iter().map(|k| k.saved_at.as_str()).min();
        let last = c
            .cards
            .iter()
            .filter_map(|k| k.last_success_at.as_deref())
            .max();
        Row {
            number: c.customer_number.clone(),
            status: c.status.as_str().to_string(),
            cards: live.count(),
            first_payment: first
                .map(|d| d.chars().take(10).collect())
                .unwrap_or_default(),
            last_payment: last
                .map(|d| d.chars().take(10).collect())
                .unwrap_or_default(),
            payments: c.cards.iter().map(|k| k.success_count).sum(),
        }
    }
}

async fn customers(
    State(account): State<Arc<Account>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let Some(session) = account.session(&headers, q.lang.as_deref()) else {
        return Redirect::to("/account/login").into_response();
    };
    let search = q.q.trim().to_string();
    let page = account
        .ctx
        .engine
        .list_customers(ListCustomersRequest {
            merchant_id: session.merchant_id,
            search: (!search.is_empty()).then(|| search.clone()),
            offset: 0,
            limit: PAGE_SIZE,
            after: q.after.clone().filter(|a| !a.is_empty()),
        })
        .await;
    let (total, rows, error) = match page {
        Ok(page) => (
            page.total,
            page.customers.iter().map(Row::of).collect(),
            None,
        ),
        Err(e) => {
            let fault = crate::surfaces::to_fault("account_customers", session.merchant_id, e);
            (0, Vec::new(), Some(fault.detail(session.language)))
        }
    };
    let next = (rows.len() as i64 == PAGE_SIZE)
        .then(|| rows.last().map(|r: &Row| r.number.clone()))
        .flatten();
    account.render(
        "customers.html",
        session.language,
        Some(&session),
        context! { q => search, rows => serde_value(&rows), total, next, after => q.after, error },
    )
}

#[derive(Debug, Default, Deserialize)]
struct CustomerQuery {
    #[serde(default)]
    number: String,
    lang: Option<String>,
}

/// The customer `number` of the session's merchant (exactly that number), as the engine's
/// personal-account view shows it.
async fn find_customer(
    account: &Account,
    session: &Session,
    number: &str,
) -> Result<Option<AccountCustomer>, Fault> {
    let page = account
        .ctx
        .engine
        .list_customers(ListCustomersRequest {
            merchant_id: session.merchant_id,
            search: Some(number.to_string()),
            offset: 0,
            limit: PAGE_SIZE,
            after: None,
        })
        .await
        .map_err(|e| crate::surfaces::to_fault("account_customer", session.merchant_id, e))?;
    Ok(page
        .customers
        .into_iter()
        .find(|c| c.customer_number == number))
}

async fn customer(
    State(account): State<Arc<Account>>,
    headers: HeaderMap,
    Query(q): Query<CustomerQuery>,
) -> Response {
    let Some(session) = account.session(&headers, q.lang.as_deref()) else {
        return Redirect::to("/account/login").into_response();
    };
    customer_page(&account, &session, &q.number, None).await
}

async fn customer_page(
    account: &Account,
    session: &Session,
    number: &str,
    error: Option<Fault>,
) -> Response {
    let message = error.map(|f| f.detail(session.language));
    customer_page_with(account, session, number, message).await
}

/// The customer's page with an error message of the page's language, if any.
async fn customer_page_with(
    account: &Account,
    session: &Session,
    number: &str,
    error: Option<&str>,
) -> Response {
    let (customer, error) = match find_customer(account, session, number).await {
        Ok(c) => (c, error),
        Err(f) => (None, Some(f.detail(session.language))),
    };
    account.render(
        "customer.html",
        session.language,
        Some(session),
        context! {
            customer => serde_value(&customer),
            // One id per rendered form (≤ 64 characters with its card suffix): a double submit
            // of the form is one change (R16).
            command_id => uuid::Uuid::new_v4().simple().to_string(),
            error,
        },
    )
}

#[derive(Deserialize)]
struct StatusForm {
    csrf: String,
    command_id: String,
    number: String,
    status: String,
    /// A fresh one-time code, when the user is enrolled in TOTP.
    #[serde(default)]
    code: SecretString,
}

async fn set_status(
    State(account): State<Arc<Account>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Form(form): Form<StatusForm>,
) -> Response {
    let session = match account.session_for_change(&headers, &form.csrf) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    if let Err(refused) = account
        .confirm_change(&session, &form.code, peer, &headers, &form.number)
        .await
    {
        return *refused;
    }
    // Only Deny is the personal account's to set or clear (the reference's "Deny" status).
    if form.status != "deny" && form.status != "clear_deny" {
        return customer_page(&account, &session, &form.number, Some(Fault::InvalidStatus)).await;
    }
    let done = account
        .ctx
        .engine
        .set_status(SetStatusRequest {
            merchant_id: session.merchant_id,
            customer_number: form.number.clone(),
            status: form.status.clone(),
            command_id: Some(form.command_id.clone()),
            actor: AuditActor::account(session.merchant_id, &session.login),
        })
        .await;
    after_change(&account, &session, &form.number, done.map(|_| ())).await
}

#[derive(Deserialize)]
struct DeleteForm {
    csrf: String,
    command_id: String,
    number: String,
    token: String,
    /// A fresh one-time code, when the user is enrolled in TOTP.
    #[serde(default)]
    code: SecretString,
}

async fn delete_card(
    State(account): State<Arc<Account>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Form(form): Form<DeleteForm>,
) -> Response {
    let session = match account.session_for_change(&headers, &form.csrf) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    if let Err(refused) = account
        .confirm_change(&session, &form.code, peer, &headers, &form.number)
        .await
    {
        return *refused;
    }
    let done = account
        .ctx
        .engine
        .delete_card(DeleteCardRequest {
            merchant_id: session.merchant_id,
            customer_number: form.number.clone(),
            token: form.token.clone(),
            command_id: Some(form.command_id.clone()),
            actor: AuditActor::account(session.merchant_id, &session.login),
        })
        .await;
    after_change(&account, &session, &form.number, done.map(|_| ())).await
}

/// After a change: back to the customer's page (303, so a reload does not post again), or the
/// page with the fault.
async fn after_change(
    account: &Account,
    session: &Session,
    number: &str,
    done: Result<(), oneclick_actors::EngineError>,
) -> Response {
    match done {
        Ok(()) => {
            let mut to = String::from("/account/customer?number=");
            to.extend(url_component(number));
            Redirect::to(&to).into_response()
        }
        Err(e) => {
            let fault = crate::surfaces::to_fault("account_change", session.merchant_id, e);
            customer_page(account, session, number, Some(fault)).await
        }
    }
}

/// Percent-encodes a query value.
fn url_component(s: &str) -> impl Iterator<Item = String> + '_ {
    s.bytes().map(|b| match b {
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
            (b as char).to_string()
        }
        _ => format!("%{b:02X}"),
    })
}

// ---- settings --------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct LimitRow {
    currency: String,
    day: Option<String>,
    week: Option<String>,
}

async fn settings(
    State(account): State<Arc<Account>>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let Some(session) = account.session(&headers, q.lang.as_deref()) else {
        return Redirect::to("/account/login").into_response();
    };
    let m = match account.ctx.engine.merchant(session.merchant_id).await {
        Ok(m) => m,
        Err(e) => {
            let fault = crate::surfaces::to_fault("account_settings", session.merchant_id, e);
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                fault.detail(session.language).into(),
            );
        }
    };
    let limits: BTreeMap<&String, LimitRow> = m
        .limits
        .iter()
        .map(|(currency, l)| {
            (
                currency,
                LimitRow {
                    currency: currency.clone(),
                    day: l.day.map(|a| a.to_string()),
                    week: l.week.map(|a| a.to_string()),
                },
            )
        })
        .collect();
    let view = context! {
        id => m.id,
        name => m.name.clone(),
        enabled => m.oneclick_enabled,
        mode => m.mode.as_str(),
        need_cvc => m.need_cvc,
        threshold => m.list_threshold,
        time_zone => m.time_zone.name(),
        union_id => m.union_id,
        mit_cof => m.mit_cof,
        limits => serde_value(limits.into_values().collect::<Vec<_>>()),
    };
    account.render(
        "settings.html",
        session.language,
        Some(&session),
        context! { m => view },
    )
}
