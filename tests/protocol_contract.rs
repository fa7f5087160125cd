//! The protocol documents against the code: `docs/asyncapi.yaml` must list, for every message,
//! exactly the fields the serde types of `src/wire/` (and the acquirer connector) serialize —
//! recursively, through nested objects and arrays — and its examples must parse into those types;
//! its channels must be exactly the subjects `Subjects` builds; `docs/protocol.md` must list every
//! fault of `Fault::ALL` with its codes and English text, every order state and response code.
//!
//! A field added in code but not in the document (or the reverse) fails here. The fully
//! populated examples are struct literals without `..Default::default()`, so a new field does not
//! compile until it is added below, and then fails until the document has it too.

use std::collections::BTreeSet;

use oneclick_testkit as support;

use oneclick::acquirer_nats::{AcquirerReply, AcquirerRequest};
use oneclick::subjects::{GatewayEndpoint, MerchantEndpoint, Subjects, ACQUIRER_AUTHORIZE};
use oneclick::wire::command::{
    Command, CommandEnvelope, CommandEvent, CommandKind, DeadLetter, DeleteCardCommand,
    RecurringChargeCommand, SetStatusCommand, TokenPayCommand,
};
use oneclick::wire::gateway::{
    CardFields, CardView, DeleteCardBody, OfferBody, OfferCardView, OfferReply, OrderFields,
    PayBody, PaySavedBody, PaymentReply, RecurringFields, RegisterBody, TokenRemovedReply,
};
use oneclick::wire::merchant::{
    AccountCardView, CustomerStatusBody, CustomerView, CustomersListBody, CustomersReply,
    MerchantAuth, OrderStateBody, OrderStateReply, PaymentTokenFields, StatusReply, TokenListBody,
    TokenListItem, TokenListReply, TokenPayBody, TokenRemoveBody,
};
use oneclick::wire::{FaultBody, FaultReply, HealthReply, OptionalCustomerRef};
use oneclick_actors::domain::{CustomerStatus, OrderKind, OrderState, ResponseCode};
use oneclick_actors::engine::requests::SecretString;
use oneclick_actors::fault::{Fault, Language};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

const ASYNCAPI: &str = include_str!("../docs/asyncapi.yaml");
const PROTOCOL: &str = include_str!("../docs/protocol.md");

fn document() -> Value {
    match serde_norway::from_str::<Value>(ASYNCAPI) {
        Ok(doc) => doc,
        Err(e) => panic!("docs/asyncapi.yaml does not parse: {e}"),
    }
}

// ---- schema walking: support::schema ------------------------------------------------------

use support::schema::check;

// ---- the cases: message name, fully populated value, parser -----------------------------------

struct Case {
    message: &'static str,
    /// Every field set (no `None`), serialized.
    full: Value,
    /// Parses a document example into the real type and serializes it back.
    parse: fn(Value) -> Result<Value, String>,
}

fn round_trip<T: Serialize + DeserializeOwned>(value: Value) -> Result<Value, String> {
    let parsed: T = serde_json::from_value(value).map_err(|e| e.to_string())?;
    serde_json::to_value(&parsed).map_err(|e| e.to_string())
}

fn to_json<T: Serialize>(value: &T) -> Value {
    match serde_json::to_value(value) {
        Ok(v) => v,
        Err(e) => panic!("serialize: {e}"),
    }
}

fn order() -> OrderFields {
    OrderFields {
        merchant_id: 452739,
        order_number: "A-1".into(),
        order_amount: "10.34".into(),
        order_currency: "RUB".into(),
        customer: OptionalCustomerRef::some("1234"),
        signature: Some("c2ln".into()),
    }
}

fn card() -> CardFields {
    CardFields {
        number: SecretString::new("4111111111111111"),
        expire_month: "12".into(),
        expire_year: "2030".into(),
        holder: "IVAN IVANOV".into(),
        cvc: Some(SecretString::new("123")),
    }
}

fn card_view() -> CardView {
    CardView {
        number: "411111******1111".into(),
        brand: "VISA".into(),
        expire: "12.2030".into(),
        holder: "IVAN IVANOV".into(),
    }
}

fn merchant() -> MerchantAuth {
    MerchantAuth {
        merchant_id: 452739,
        login: "LOGIN".into(),
        password: SecretString::new("PASSWORD"),
    }
}

fn payment_reply() -> PaymentReply {
    PaymentReply {
        merchant_id: 452739,
        order_number: "A-1".into(),
        kind: OrderKind::Purchase,
        order_state: OrderState::Approved,
        response_code: ResponseCode::AS000,
        message: "Approved".into(),
        order_amount: "10.34".into(),
        order_currency: "RUB".into(),
        card: Some(card_view()),
        token: Some("T".into()),
        card_saved: true,
    }
}

fn fault_body() -> FaultBody {
    FaultBody::new(Fault::TokenNotFound, Language::En)
}

fn envelope(command: Command) -> CommandEnvelope {
    CommandEnvelope {
        command_id: "c-1".into(),
        merchant_id: 452739,
        command,
    }
}

fn commands() -> [Command; 4] {
    [
        Command::TokenPay(TokenPayCommand {
            order_number: "A-1".into(),
            order_amount: "10.34".into(),
            order_currency: "RUB".into(),
            customer: "1234".into(),
            token: "T".into(),
            signature: Some("c2ln".into()),
        }),
        Command::RecurringCharge(RecurringChargeCommand {
            initial_order_number: "A-0".into(),
            order_number: "A-1".into(),
            order_amount: "10.34".into(),
            order_currency: "RUB".into(),
        }),
        Command::DeleteCard(DeleteCardCommand {
            customer: "1234".into(),
            token: "T".into(),
        }),
        Command::SetStatus(SetStatusCommand {
            customer: "1234".into(),
            status: "deny".into(),
        }),
    ]
}

fn cases() -> Vec<Case> {
    let [token_pay, recurring, delete, set_status] = commands();
    vec![
        Case {
            message: "OfferRequest",
            full: to_json(&OfferBody {
                order: order(),
                language: Some("EN".into()),
            }),
            parse: round_trip::<OfferBody>,
        },
        Case {
            message: "PayRequest",
            full: to_json(&PayBody {
                order: order(),
                card: card(),
                save_card: Some(true),
                recurring: RecurringFields {
                    recurring_indicator: Some("1".into()),
                    recurring_min_amount: Some("1.00".into()),
                    recurring_max_amount: Some("100.00".into()),
                    recurring_period: Some("30".into()),
                    recurring_max_date: Some("31.12.2030".into()),
                },
                language: Some("EN".into()),
            }),
            parse: round_trip::<PayBody>,
        },
        Case {
            message: "PaySavedRequest",
            full: to_json(&PaySavedBody {
                order: order(),
                token: "T".into(),
                cvc: Some(SecretString::new("123")),
                language: Some("EN".into()),
            }),
            parse: round_trip::<PaySavedBody>,
        },
        Case {
            message: "RegisterRequest",
            full: to_json(&RegisterBody {
                order: order(),
                card: card(),
                language: Some("EN".into()),
            }),
            parse: round_trip::<RegisterBody>,
        },
        Case {
            message: "DeleteCardRequest",
            full: to_json(&DeleteCardBody {
                merchant_id: 452739,
                customer: "1234".into(),
                token: "T".into(),
                command_id: Some("k".into()),
                language: Some("EN".into()),
            }),
            parse: round_trip::<DeleteCardBody>,
        },
        Case {
            message: "OfferReply",
            full: to_json(&OfferReply {
                status: CustomerStatus::Member,
                save_offer: true,
                need_cvc: true,
                saved_card_payments: true,
                cards: vec![OfferCardView {
                    token: "T".into(),
                    number: "412362******0028".into(),
                    brand: "VISA".into(),
                    expire: "12.2027".into(),
                    holder: "IVAN IVANOV".into(),
                }],
            }),
            parse: round_trip::<OfferReply>,
        },
        Case {
            message: "PaymentReply",
            full: to_json(&payment_reply()),
            parse: round_trip::<PaymentReply>,
        },
        Case {
            message: "TokenRemovedReply",
            full: to_json(&TokenRemovedReply {
                message: "Token T is removed".into(),
            }),
            parse: round_trip::<TokenRemovedReply>,
        },
        Case {
            message: "TokenListRequest",
            full: to_json(&TokenListBody {
                merchant: merchant(),
                customer: "1234".into(),
                language: Some("RU".into()),
            }),
            parse: round_trip::<TokenListBody>,
        },
        Case {
            message: "TokenListReply",
            full: to_json(&TokenListReply(vec![TokenListItem {
                token: "T".into(),
                post: "0028".into(),
                bin: 412362,
                brand: "VISA".into(),
                bank: "".into(),
                expire: "12.2025".into(),
                active: true,
                need_cvc: false,
                assets: vec![],
            }])),
            parse: round_trip::<TokenListReply>,
        },
        Case {
            message: "TokenRemoveRequest",
            full: to_json(&TokenRemoveBody {
                merchant: merchant(),
                customer: "1234".into(),
                token: "T".into(),
                command_id: Some("k".into()),
                language: Some("RU".into()),
            }),
            parse: round_trip::<TokenRemoveBody>,
        },
        Case {
            message: "TokenPayRequest",
            full: to_json(&TokenPayBody {
                merchant: merchant(),
                order_number: "A-1".into(),
                order_amount: "10.34".into(),
                order_currency: "RUB".into(),
                token_type: 5,
                payment_token: PaymentTokenFields {
                    token: "T".into(),
                    customer: "1234".into(),
                },
                signature: Some("c2ln".into()),
                language: Some("EN".into()),
            }),
            parse: round_trip::<TokenPayBody>,
        },
        Case {
            message: "OrderStateRequest",
            full: to_json(&OrderStateBody {
                merchant: merchant(),
                order_number: "A-1".into(),
                language: Some("EN".into()),
            }),
            parse: round_trip::<OrderStateBody>,
        },
        Case {
            message: "OrderStateReply",
            full: to_json(&OrderStateReply {
                merchant_id: 452739,
                order_number: "A-1".into(),
                kind: OrderKind::Purchase,
                order_state: OrderState::Approved,
                response_code: ResponseCode::AS000,
                order_amount: "10.34".into(),
                order_currency: "RUB".into(),
                created_at: "2026-11-22T10:00:00.000Z".into(),
                updated_at: "2026-11-22T10:00:01.000Z".into(),
                card: Some(card_view()),
                token: Some("T".into()),
            }),
            parse: round_trip::<OrderStateReply>,
        },
        Case {
            message: "CustomersListRequest",
            full: to_json(&CustomersListBody {
                merchant: merchant(),
                search: Some("1234".into()),
                offset: Some(0),
                limit: Some(50),
                language: Some("EN".into()),
            }),
            parse: round_trip::<CustomersListBody>,
        },
        Case {
            message: "CustomersListReply",
            full: to_json(&CustomersReply {
                total: 1,
                customers: vec![CustomerView {
                    customer_number: "1234".into(),
                    status: CustomerStatus::Member,
                    created_at: "2026-11-01T09:00:00.000Z".into(),
                    cards: vec![AccountCardView {
                        token: "T".into(),
                        brand: "VISA".into(),
                        number: "412362******0028".into(),
                        expire: "12.2027".into(),
                        holder: "IVAN IVANOV".into(),
                        state: "member".into(),
                        saved_at: "2026-11-01T09:00:00.000Z".into(),
                        last_success_at: Some("2026-11-20T12:00:00.000Z".into()),
                        success_count: 3,
                        order: Some(1),
                    }],
                }],
            }),
            parse: round_trip::<CustomersReply>,
        },
        Case {
            message: "CustomerStatusRequest",
            full: to_json(&CustomerStatusBody {
                merchant: merchant(),
                customer: "1234".into(),
                status: "deny".into(),
                command_id: Some("k".into()),
                language: Some("EN".into()),
            }),
            parse: round_trip::<CustomerStatusBody>,
        },
        Case {
            message: "StatusReply",
            full: to_json(&StatusReply {
                customer_number: "1234".into(),
                status: CustomerStatus::Deny,
                cards_deleted: true,
            }),
            parse: round_trip::<StatusReply>,
        },
        Case {
            message: "TokenPayCommand",
            full: to_json(&envelope(token_pay)),
            parse: round_trip::<CommandEnvelope>,
        },
        Case {
            message: "RecurringChargeCommand",
            full: to_json(&envelope(recurring)),
            parse: round_trip::<CommandEnvelope>,
        },
        Case {
            message: "DeleteCardCommand",
            full: to_json(&envelope(delete)),
            parse: round_trip::<CommandEnvelope>,
        },
        Case {
            message: "SetStatusCommand",
            full: to_json(&envelope(set_status.clone())),
            parse: round_trip::<CommandEnvelope>,
        },
        Case {
            message: "CommandEvent",
            full: to_json(&CommandEvent {
                command_id: "c-1".into(),
                kind: CommandKind::TokenPay,
                ok: true,
                result: Some(to_json(&payment_reply())),
                fault: Some(fault_body()),
            }),
            parse: round_trip::<CommandEvent>,
        },
        Case {
            message: "DeadLetter",
            full: to_json(&DeadLetter {
                command_id: Some("c-1".into()),
                kind: "set_status".into(),
                merchant_id: Some(452739),
                deliveries: 5,
                stream_sequence: 42,
                fault: fault_body(),
                command: Some(envelope(set_status)),
            }),
            parse: round_trip::<DeadLetter>,
        },
        Case {
            message: "FaultReply",
            full: to_json(&FaultReply::new(Fault::Internal, Language::Ru)),
            parse: round_trip::<FaultReply>,
        },
        Case {
            message: "HealthRequest",
            full: json!({}),
            parse: Ok,
        },
        Case {
            message: "HealthReply",
            full: to_json(&HealthReply {
                status: "ok".into(),
                vault: true,
                nats: true,
                active_customers: 12,
            }),
            parse: round_trip::<HealthReply>,
        },
        Case {
            message: "AcquirerRequest",
            full: to_json(&AcquirerRequest {
                merchant_id: 452739,
                order_number: "A-1".into(),
                amount_minor: 1034,
                currency: "RUB".into(),
                pan: "4111111111111111".into(),
                expiry_month: 12,
                expiry_year: 2030,
                cvc: Some("123".into()),
                kind: "purchase".into(),
                network_tx_id: Some("SIM1".into()),
            }),
            parse: round_trip::<AcquirerRequest>,
        },
        Case {
            message: "AcquirerReply",
            full: to_json(&AcquirerReply {
                state: "approved".into(),
                response_code: "AS000".into(),
                network_tx_id: Some("SIM1".into()),
                approval_code: Some("123456".into()),
            }),
            parse: round_trip::<AcquirerReply>,
        },
    ]
}

fn messages(doc: &Value) -> &serde_json::Map<String, Value> {
    match doc
        .pointer("/components/messages")
        .and_then(Value::as_object)
    {
        Some(m) => m,
        None => panic!("docs/asyncapi.yaml has no components.messages"),
    }
}

fn payload<'a>(doc: &'a Value, message: &str) -> &'a Value {
    match messages(doc).get(message).and_then(|m| m.get("payload")) {
        Some(p) => p,
        None => panic!("docs/asyncapi.yaml: message {message} missing or without payload"),
    }
}

// ---- tests ------------------------------------------------------------------------------------

#[test]
fn every_message_schema_has_exactly_the_fields_of_its_serde_type() {
    let doc = document();
    let mut errors = Vec::new();
    for case in cases() {
        check(
            &doc,
            payload(&doc, case.message),
            &case.full,
            case.message,
            &mut errors,
        );
    }
    assert!(
        errors.is_empty(),
        "docs/asyncapi.yaml vs code:\n{}",
        errors.join("\n")
    );
}

#[test]
fn every_documented_message_is_covered_and_every_covered_message_is_documented() {
    let doc = document();
    let documented: BTreeSet<&str> = messages(&doc).keys().map(String::as_str).collect();
    let covered: BTreeSet<&str> = cases().iter().map(|c| c.message).collect();
    assert_eq!(
        documented, covered,
        "components.messages vs the cases of this test"
    );
}

#[test]
fn every_document_example_parses_into_its_type_and_fits_its_schema() {
    let doc = document();
    let mut errors = Vec::new();
    for case in cases() {
        let examples = messages(&doc)
            .get(case.message)
            .and_then(|m| m.get("examples"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        assert!(!examples.is_empty(), "{}: no example", case.message);
        for (i, example) in examples.into_iter().enumerate() {
            let Some(body) = example.get("payload").cloned() else {
                errors.push(format!("{} example {i}: no payload", case.message));
                continue;
            };
            match (case.parse)(body) {
                Ok(reserialized) => check(
                    &doc,
                    payload(&doc, case.message),
                    &reserialized,
                    &format!("{} example {i}", case.message),
                    &mut errors,
                ),
                Err(e) => errors.push(format!("{} example {i} does not parse: {e}", case.message)),
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn channels_are_exactly_the_subjects_the_code_builds() {
    let doc = document();
    let s = Subjects::default();
    let (merchant_id, partition) = (452739_i64, 7_u32);
    let mut built = BTreeSet::new();
    for &e in GatewayEndpoint::ALL {
        built.insert(s.gateway(e));
    }
    for &e in MerchantEndpoint::ALL {
        built.insert(s.merchant(merchant_id, e));
    }
    for &k in CommandKind::ALL {
        built.insert(s.command(partition, k));
        built.insert(s.event(merchant_id, k));
        built.insert(s.dead_letter(k.as_str()));
    }
    built.insert(s.health());
    built.insert(ACQUIRER_AUTHORIZE.to_string());

    let mut documented = BTreeSet::new();
    let channels = doc
        .get("channels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for name in channels.keys() {
        let kinds: Vec<&str> = if name.contains("{kind}") {
            CommandKind::ALL.iter().map(|k| k.as_str()).collect()
        } else {
            vec![""]
        };
        for kind in kinds {
            documented.insert(
                name.replace("{merchant_id}", &merchant_id.to_string())
                    .replace("{partition}", &partition.to_string())
                    .replace("{kind}", kind),
            );
        }
    }
    assert_eq!(documented, built);
}

#[test]
fn every_reference_resolves_and_every_message_is_used_by_a_channel() {
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let doc = document();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        assert!(
            r.strip_prefix('#').and_then(|p| doc.pointer(p)).is_some(),
            "dangling $ref {r}"
        );
    }
    let mut from_channels = Vec::new();
    refs(
        doc.get("channels").unwrap_or(&Value::Null),
        &mut from_channels,
    );
    for name in messages(&doc).keys() {
        let r = format!("#/components/messages/{name}");
        assert!(
            from_channels.contains(&r.as_str()),
            "message {name} is used by no channel"
        );
    }
    assert_eq!(doc.get("asyncapi").and_then(Value::as_str), Some("2.6.0"));
}

/// The rows of protocol.md's fault table: `| faultcode | faultstring | `Name` | detail |`.
fn fault_rows() -> Vec<(u32, u32, String, String)> {
    PROTOCOL
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            if cells.len() != 4 {
                return None;
            }
            let code = cells[0].parse().ok()?;
            let sub = cells[1].parse().ok()?;
            let name = cells[2].strip_prefix('`')?.strip_suffix('`')?;
            Some((code, sub, name.to_string(), cells[3].to_string()))
        })
        .collect()
}

#[test]
fn protocol_md_lists_every_fault_with_its_codes_and_english_text() {
    let rows = fault_rows();
    for &fault in Fault::ALL {
        let (code, sub) = fault.codes();
        let row = rows.iter().find(|r| r.2 == fault.name());
        assert_eq!(
            row,
            Some(&(
                code,
                sub,
                fault.name().to_string(),
                fault.detail(Language::En).to_string()
            )),
            "docs/protocol.md fault row for {}",
            fault.name()
        );
    }
    assert_eq!(
        rows.len(),
        Fault::ALL.len(),
        "docs/protocol.md lists faults the code does not have"
    );
}

#[test]
fn protocol_md_lists_every_order_state_and_response_code() {
    for state in OrderState::ALL {
        assert!(
            PROTOCOL.contains(&format!("| `{}` |", state.as_str())),
            "order state {state}"
        );
    }
    for code in ResponseCode::ALL {
        assert!(
            PROTOCOL.contains(&format!("| `{}` |", code.as_str())),
            "response code {code}"
        );
    }
}

#[test]
fn protocol_md_names_every_subject_pattern() {
    let doc = document();
    let channels = doc
        .get("channels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for name in channels.keys() {
        let prose = name
            .replace("{merchant_id}", "<merchant_id>")
            .replace("{partition}", "<partition>")
            .replace("{kind}", "<kind>");
        assert!(
            PROTOCOL.contains(&prose),
            "docs/protocol.md does not mention {prose}"
        );
    }
}
