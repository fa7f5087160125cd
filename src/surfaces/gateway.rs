//! Gateway request-reply endpoints (the interactive payment page): offer, pay with a new card,
//! pay with a saved card, registration, delete the current card. These carry card data (PAN,
//! CVC), so they are request-reply only, never a stream (R8).

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::reply_guard::Caller;
use super::{add_endpoint, to_fault, Context, EndpointInfo, Reply};
use crate::subjects::GatewayEndpoint;
use crate::wire::gateway::*;
use crate::wire::{encode, parse_request};

/// Subscribes every gateway endpoint; replies go only to the gateway's inbox prefix.
pub async fn register(ctx: Arc<Context>) -> anyhow::Result<Vec<EndpointInfo>> {
    let mut endpoints = Vec::new();
    for &endpoint in GatewayEndpoint::ALL {
        let subject = ctx.subjects.gateway(endpoint);
        let name = match endpoint {
            GatewayEndpoint::Offer => "gw_offer",
            GatewayEndpoint::Pay => "gw_pay",
            GatewayEndpoint::PaySaved => "gw_pay_saved",
            GatewayEndpoint::Register => "gw_register",
            GatewayEndpoint::DeleteCard => "gw_delete_card",
        };
        endpoints.push(
            add_endpoint(
                ctx.clone(),
                name,
                subject,
                |_, _| Some(Caller::Gateway),
                move |ctx, msg| async move { handle(&ctx, endpoint, &msg.payload).await },
            )
            .await?,
        );
    }
    Ok(endpoints)
}

fn body<T: DeserializeOwned>(ctx: &Context, bytes: &[u8]) -> Result<T, oneclick_actors::Fault> {
    parse_request(bytes, ctx.settings.service.max_request_bytes)
}

/// Handles one gateway request.
pub async fn handle(ctx: &Context, endpoint: GatewayEndpoint, bytes: &[u8]) -> Reply {
    let engine = &ctx.engine;
    let name = endpoint.as_str();
    match endpoint {
        GatewayEndpoint::Offer => {
            let req = body::<OfferBody>(ctx, bytes)?.into_request()?;
            let merchant = req.order.merchant_id;
            let offer = engine
                .offer(req)
                .await
                .map_err(|e| to_fault(name, merchant, e))?;
            encode(&OfferReply::from(offer))
        }
        GatewayEndpoint::Pay => {
            let req = body::<PayBody>(ctx, bytes)?.into_request()?;
            let merchant = req.order.merchant_id;
            let result = engine
                .pay_new_card(req)
                .await
                .map_err(|e| to_fault(name, merchant, e))?;
            ctx.metrics.observe_payment(&result);
            encode(&PaymentReply::from(result))
        }
        GatewayEndpoint::PaySaved => {
            let req = body::<PaySavedBody>(ctx, bytes)?.into_request()?;
            let merchant = req.order.merchant_id;
            let result = engine
                .pay_saved_card(req)
                .await
                .map_err(|e| to_fault(name, merchant, e))?;
            ctx.metrics.observe_payment(&result);
            encode(&PaymentReply::from(result))
        }
        GatewayEndpoint::Register => {
            let req = body::<RegisterBody>(ctx, bytes)?.into_request()?;
            let merchant = req.order.merchant_id;
            let result = engine
                .register(req)
                .await
                .map_err(|e| to_fault(name, merchant, e))?;
            ctx.metrics.observe_payment(&result);
            encode(&PaymentReply::from(result))
        }
        GatewayEndpoint::DeleteCard => {
            let req = body::<DeleteCardBody>(ctx, bytes)?.into_request()?;
            let merchant = req.merchant_id;
            let removed = engine
                .delete_card(req)
                .await
                .map_err(|e| to_fault(name, merchant, e))?;
            encode(&TokenRemovedReply::from(removed))
        }
    }
}
