//! docs/openapi.yaml against the code (issue 15): its paths are exactly the web router's
//! (`oneclick::web::services::ROUTES`, all `POST`, each naming its NATS twin), and every
//! example — requests, replies, faults, the reference's own — parses into the wire type the
//! handler uses and, serialized back, fits the documented schema (a reply example must be
//! exactly what the reply type writes) (those of docs/asyncapi.yaml,
//! which tests/protocol_contract.rs checks against the same types field by field).

use std::collections::BTreeSet;

use oneclick::subjects::MerchantEndpoint;
use oneclick::web::services::ROUTES;
use oneclick::wire::gateway::{PaymentReply, TokenRemovedReply};
use oneclick::wire::merchant::{TokenListBody, TokenListReply, TokenPayBody, TokenRemoveBody};
use oneclick::wire::FaultReply;
use oneclick_testkit as support;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use support::schema::check;

const OPENAPI: &str = include_str!("../docs/openapi.yaml");
const ASYNCAPI: &str = include_str!("../docs/asyncapi.yaml");

/// The OpenAPI document with its schema references pointed into the AsyncAPI document (where
/// they live), and that document.
fn documents() -> (Value, Value) {
    let openapi = serde_norway::from_str::<Value>(&OPENAPI.replace("'asyncapi.yaml#/", "'#/"))
        .unwrap_or_else(|e| panic!("docs/openapi.yaml does not parse: {e}"));
    let asyncapi = serde_norway::from_str::<Value>(ASYNCAPI)
        .unwrap_or_else(|e| panic!("docs/asyncapi.yaml does not parse: {e}"));
    (openapi, asyncapi)
}

fn round_trip<T: Serialize + DeserializeOwned>(value: Value) -> Result<Value, String> {
    let parsed: T = serde_json::from_value(value).map_err(|e| e.to_string())?;
    serde_json::to_value(&parsed).map_err(|e| e.to_string())
}

type Parse = fn(Value) -> Result<Value, String>;

/// The wire types the handler of `endpoint` parses and answers.
fn types_of(endpoint: MerchantEndpoint) -> (Parse, Parse) {
    match endpoint {
        MerchantEndpoint::TokenList => (round_trip::<TokenListBody>, round_trip::<TokenListReply>),
        MerchantEndpoint::TokenRemove => (
            round_trip::<TokenRemoveBody>,
            round_trip::<TokenRemovedReply>,
        ),
        MerchantEndpoint::TokenPay => (round_trip::<TokenPayBody>, round_trip::<PaymentReply>),
        other => panic!("{other} is not served over HTTP"),
    }
}

/// Follows an OpenAPI-level `$ref` (`#/components/responses/…`).
fn deref<'a>(openapi: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => openapi
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => v,
    }
}

#[test]
fn the_spec_lists_exactly_the_routes_of_the_router() {
    let (openapi, _) = documents();
    let paths = openapi["paths"].as_object().expect("paths");
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let routed: BTreeSet<&str> = ROUTES.iter().map(|r| r.path).collect();
    assert_eq!(documented, routed, "docs/openapi.yaml paths vs the router");
    for route in ROUTES {
        let item = &paths[route.path];
        let methods: Vec<&String> = item.as_object().expect("path item").keys().collect();
        assert_eq!(methods, ["post"], "{}: only POST is routed", route.path);
        let twin = format!(
            "oneclick.v1.merchant.{{merchant_id}}.{}",
            route.endpoint.as_str()
        );
        let description = item["post"]["description"].as_str().unwrap_or_default();
        assert!(
            description.contains(&twin),
            "{}: names its NATS twin {twin}",
            route.path
        );
    }
}

#[test]
fn every_example_parses_into_its_wire_type_and_fits_its_schema() {
    let (openapi, asyncapi) = documents();
    let mut errors = Vec::new();
    let mut checked = 0;
    for route in ROUTES {
        let (parse_request, parse_reply) = types_of(route.endpoint);
        let op = &openapi["paths"][route.path]["post"];
        let request = &op["requestBody"]["content"]["application/json"];
        let requests = request["examples"].as_object().expect("request examples");
        assert!(!requests.is_empty(), "{}: no request example", route.path);
        for (name, example) in requests {
            let at = format!("{} request {name}", route.path);
            match parse_request(example["value"].clone()) {
                Ok(v) => check(&asyncapi, &request["schema"], &v, &at, &mut errors),
                Err(e) => errors.push(format!("{at} does not parse: {e}")),
            }
            checked += 1;
        }
        for (status, response) in op["responses"].as_object().expect("responses") {
            let content = &deref(&openapi, response)["content"]["application/json"];
            let examples = content["examples"].as_object().expect("reply examples");
            assert!(!examples.is_empty(), "{} {status}: no example", route.path);
            for (name, example) in examples {
                let at = format!("{} {status} {name}", route.path);
                let value = example["value"].clone();
                let parsed = if value.get("fault").is_some() {
                    round_trip::<FaultReply>(value.clone())
                } else {
                    parse_reply(value.clone())
                };
                match parsed {
                    // A reply type writes every field: an example that differs from its round
                    // trip has a field the service never sends, or lacks one it always sends.
                    Ok(v) if v != value => errors.push(format!("{at}: the service would send {v}")),
                    Ok(v) => check(&asyncapi, &content["schema"], &v, &at, &mut errors),
                    Err(e) => errors.push(format!("{at} does not parse: {e}")),
                }
                checked += 1;
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(checked >= 15, "only {checked} examples checked");
}
