//! Merchant request-reply services under `<p>.v1.merchant.<merchant_id>.…`, mirroring the
//! original web services (docs/rules.md §4): token list, token removal, Token Pay, order state,
//! customers list/search and status change.
//!
//! Every request authenticates `merchant {merchant_id, login, password}` (argon2, cached once
//! verified) and its `merchant_id` must equal the subject's. Customers and cards are resolved in
//! the caller's own union only, so another merchant's token is indistinguishable from one that
//! does not exist (R17).

use std::sync::Arc;

use oneclick_actors::engine::merchants::LoginSource;
use oneclick_actors::Fault;
use serde::de::DeserializeOwned;

use super::reply_guard::Caller;
use super::{add_endpoint, to_fault, Context, EndpointInfo, Reply};
use crate::subjects::{MerchantEndpoint, Subjects};
use crate::wire::gateway::{PaymentReply, TokenRemovedReply};
use crate::wire::merchant::*;
use crate::wire::{encode, parse_request};

/// The merchant a subject names: replies go only to that merchant's inbox prefix. A subject
/// whose merchant id does not parse names nobody, so its request is dropped unanswered.
fn caller_of(subjects: &Subjects, subject: &str) -> Option<Caller> {
    subjects
        .parse_merchant(subject)
        .map(|m| Caller::Merchant(m.merchant_id))
}

/// Subscribes every merchant endpoint (`<p>.v1.merchant.*.<endpoint>`).
pub async fn register(ctx: Arc<Context>) -> anyhow::Result<Vec<EndpointInfo>> {
    let mut endpoints = Vec::new();
    for &endpoint in MerchantEndpoint::ALL {
        let subject = ctx.subjects.merchant_wildcard(endpoint);
        let name = match endpoint {
            MerchantEndpoint::TokenList => "merchant_token_list",
            MerchantEndpoint::TokenRemove => "merchant_token_remove",
            MerchantEndpoint::TokenPay => "merchant_token_pay",
            MerchantEndpoint::OrderState => "merchant_order_state",
            MerchantEndpoint::CustomersList => "merchant_customers_list",
            MerchantEndpoint::CustomersStatus => "merchant_customers_status",
        };
        endpoints.push(
            add_endpoint(
                ctx.clone(),
                name,
                subject,
                caller_of,
                move |ctx, msg| async move {
                    let merchant_id = ctx
                        .subjects
                        .parse_merchant(msg.subject.as_str())
                        .ok_or(Fault::UnknownMerchant)?
                        .merchant_id;
                    let source = LoginSource::from_reply_subject(msg.reply.as_deref());
                    handle(&ctx, endpoint, merchant_id, &source, &msg.payload).await
                },
            )
            .await?,
        );
    }
    Ok(endpoints)
}

fn body<T: DeserializeOwned>(ctx: &Context, bytes: &[u8]) -> Result<T, Fault> {
    parse_request(bytes, ctx.settings.service.max_request_bytes)
}

/// Authenticates the call (failures counted per `source`, docs/security/login.md), then runs it.
async fn authed<R>(
    ctx: &Context,
    call: MerchantCall<R>,
    name: &str,
    source: &LoginSource,
) -> Result<R, Fault> {
    let merchant_id = call.credentials.merchant_id;
    ctx.engine
        .authenticate(&call.credentials, source)
        .await
        .map_err(|e| to_fault(name, merchant_id, e))?;
    Ok(call.request)
}

/// Handles one merchant request for the merchant named by the subject.
pub async fn handle(
    ctx: &Context,
    endpoint: MerchantEndpoint,
    merchant_id: i64,
    source: &LoginSource,
    bytes: &[u8],
) -> Reply {
    let engine = &ctx.engine;
    let name = endpoint.as_str();
    let fail = |e| to_fault(name, merchant_id, e);
    match endpoint {
        MerchantEndpoint::TokenList => {
            let req = authed(
                ctx,
                body::<TokenListBody>(ctx, bytes)?.into_request(merchant_id)?,
                name,
                source,
            )
            .await?;
            let list = engine.token_list(req).await.map_err(fail)?;
            encode(&TokenListReply::from(list))
        }
        MerchantEndpoint::TokenRemove => {
            let req = authed(
                ctx,
                body::<TokenRemoveBody>(ctx, bytes)?.into_request(merchant_id)?,
                name,
                source,
            )
            .await?;
            let removed = engine.delete_card(req).await.map_err(fail)?;
            encode(&TokenRemovedReply::from(removed))
        }
        MerchantEndpoint::TokenPay => {
            let req = authed(
                ctx,
                body::<TokenPayBody>(ctx, bytes)?.into_request(merchant_id)?,
                name,
                source,
            )
            .await?;
            let result = engine.token_pay(req).await.map_err(fail)?;
            ctx.metrics.observe_payment(&result);
            encode(&PaymentReply::from(result))
        }
        MerchantEndpoint::OrderState => {
            let req = authed(
                ctx,
                body::<OrderStateBody>(ctx, bytes)?.into_request(merchant_id)?,
                name,
                source,
            )
            .await?;
            let state = engine.order_state(req).await.map_err(fail)?;
            encode(&OrderStateReply::from(state))
        }
        MerchantEndpoint::CustomersList => {
            let req = authed(
                ctx,
                body::<CustomersListBody>(ctx, bytes)?.into_request(merchant_id)?,
                name,
                source,
            )
            .await?;
            let page = engine.list_customers(req).await.map_err(fail)?;
            encode(&CustomersReply::from(page))
        }
        MerchantEndpoint::CustomersStatus => {
            let req = authed(
                ctx,
                body::<CustomerStatusBody>(ctx, bytes)?.into_request(merchant_id)?,
                name,
                source,
            )
            .await?;
            let changed = engine.set_status(req).await.map_err(fail)?;
            encode(&StatusReply::from(changed))
        }
    }
}
