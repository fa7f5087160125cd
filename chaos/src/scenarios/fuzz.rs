//! Scenario 10: fuzzing every inbound message parser and the domain validators for a set time
//! (`--seconds`, default 60), proptest-driven (cargo-fuzz needs a nightly toolchain and is not
//! installed here). Inputs, drawn from proptest strategies:
//!
//! - random bytes (any length up to 4 KiB, and a few over `max_request_bytes`);
//! - random JSON documents built from every field name and alias of the protocol, nested objects
//!   and arrays, and hostile leaves (huge and fractional numbers, exponents, negative zero, long
//!   strings, control characters, RTL and astral-plane Unicode, NUL, the prohibited characters);
//! - valid bodies of every message type with random mutations (a field replaced by a hostile
//!   leaf, removed, duplicated under an alias, an unknown field added), then serialized, sometimes
//!   truncated.
//!
//! Each input goes through `oneclick::wire::parse_request::<T>` for every body type (gateway:
//! offer, pay, pay_saved, register, delete_card; merchant: token list/removal/pay, order state,
//! customers list/status; `CommandEnvelope`), `into_request` of what parsed (and
//! `CommandEnvelope::subject`), `sniff_language`, and the string leaves through every domain
//! validator (`Amount`, `Pan`, `CardholderName`, `Currency`, `CustomerNumber`, `Cvc`, `Expiry`,
//! `OrderNumber`, `Token`, `MerchantMode`, `CustomerStatus`, `recurring::parse_date`,
//! `limits::parse_time_zone`). A panic is a crash (caught per input, the input saved to
//! `crashes/`); an input slower than 1 s is a hang; a watchdog aborts the run if one input takes
//! 20 s. Property tests of amounts, card numbers, customer numbers and the limit windows (day/week,
//! DST) live next to the code in `actors/src/domain/*` and run with `cargo test -p oneclick-actors`.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oneclick::wire::gateway::*;
use oneclick::wire::merchant::*;
use oneclick::wire::{parse_request, CommandEnvelope};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

use crate::report::Report;
use crate::Run;

const MAX: usize = 65_536;

const KEYS: &[&str] = &[
    "merchant_id",
    "merchantId",
    "Merchant_ID",
    "order_number",
    "orderNumber",
    "ordernumber",
    "order_amount",
    "amount",
    "orderAmount",
    "order_currency",
    "currency",
    "orderCurrency",
    "customer_number",
    "customerNumber",
    "customernumber",
    "signature",
    "language",
    "card",
    "number",
    "pan",
    "cardNumber",
    "expire_month",
    "expiry_month",
    "expireMonth",
    "expire_year",
    "expiry_year",
    "expireYear",
    "holder",
    "cardholder",
    "cardHolder",
    "cvc",
    "cvc2",
    "cvv",
    "save_card",
    "saveCard",
    "recurring_indicator",
    "recurringIndicator",
    "recurring_min_amount",
    "recurring_max_amount",
    "recurring_period",
    "recurringCount",
    "recurring_max_date",
    "token",
    "command_id",
    "commandId",
    "merchant",
    "login",
    "password",
    "token_type",
    "tokenType",
    "payment_token",
    "paymentToken",
    "search",
    "offset",
    "limit",
    "status",
    "kind",
    "initial_order_number",
    "union_id",
    "mode",
    "need_cvc",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        prop_oneof![
            Just("452739"),
            Just("-1"),
            Just("0"),
            Just("1e400"),
            Just("10.34"),
            Just("10.345"),
            Just("999999999999999.99"),
            Just("4111111111111111"),
            Just("12"),
            Just("2030"),
            Just("RUB"),
            Just("RU"),
            Just("EN"),
            Just("5"),
            Just("<>\"='/\\();#"),
            Just("\u{0}"),
            Just("\u{202e}abc"),
            Just("𝔘𝔫𝔦𝔠𝔬𝔡𝔢"),
            Just("31.12.2030"),
            Just("29.02.2031"),
            Just("49D902C6-1CCF-4605-9228-11D0E8115C77"),
            Just("deny"),
            Just("leave"),
            Just("token_pay"),
            Just("delete_card"),
            Just("Europe/Moscow"),
            Just("-0"),
            Just("0x10"),
            Just(" 1 "),
            Just("١٢٣")
        ]
        .prop_map(|s| Value::String(s.to_string())),
        "\\PC{0,40}".prop_map(Value::String),
        "[0-9]{0,40}".prop_map(Value::String),
        proptest::collection::vec(any::<char>(), 0..80)
            .prop_map(|c| Value::String(c.into_iter().collect())),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 10, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..12).prop_map(
                |kv| Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>()
                )
            ),
        ]
    })
}

/// A valid body of every message type.
fn valid_bodies() -> Vec<Value> {
    let order = json!({"merchant_id": "452739", "order_number": "A-1", "order_amount": "10.34", "order_currency": "RUB",
                       "customer_number": "1234", "signature": "q2Zp", "language": "EN"});
    let card = json!({"number": "4111111111111111", "expire_month": "12", "expire_year": "2030", "holder": "IVAN IVANOV", "cvc": "123"});
    let merchant = json!({"merchant_id": "452739", "login": "demo", "password": "demo-password"});
    let with = |mut a: Value, b: Value| {
        if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
            a.extend(b);
        }
        a
    };
    vec![
        order.clone(),
        with(order.clone(), json!({"card": card, "save_card": true})),
        with(
            order.clone(),
            json!({"card": card, "recurring_indicator": "1", "recurring_min_amount": "1.00", "recurring_max_amount": "9.00", "recurring_period": "30", "recurring_max_date": "31.12.2030"}),
        ),
        with(
            order.clone(),
            json!({"token": "49D902C6-1CCF-4605-9228-11D0E8115C77", "cvc": "123"}),
        ),
        json!({"merchant_id": "452739", "customer_number": "1234", "token": "49D902C6-1CCF-4605-9228-11D0E8115C77", "command_id": "d-1"}),
        json!({"merchant": merchant, "customernumber": "1234", "language": "RU"}),
        json!({"merchant": merchant, "customernumber": "1234", "token": "49D902C6-1CCF-4605-9228-11D0E8115C77"}),
        json!({"merchant": merchant, "order_number": "A-2", "order_amount": "5.00", "order_currency": "RUB", "token_type": 5,
               "payment_token": {"token": "49D902C6-1CCF-4605-9228-11D0E8115C77", "customer_number": "1234"}}),
        json!({"merchant": merchant, "order_number": "A-2"}),
        json!({"merchant": merchant, "search": "1234", "offset": 0, "limit": 50}),
        json!({"merchant": merchant, "customernumber": "1234", "status": "deny", "command_id": "st-1"}),
        json!({"command_id": "c-1", "kind": "token_pay", "merchant_id": 452739, "order_number": "A-3", "order_amount": "1.00", "order_currency": "RUB", "customer_number": "1234", "token": "49D902C6-1CCF-4605-9228-11D0E8115C77"}),
        json!({"command_id": "c-2", "kind": "recurring_charge", "merchant_id": 452739, "initial_order_number": "A-0", "order_number": "A-4", "order_amount": "1.00", "order_currency": "RUB"}),
        json!({"command_id": "c-3", "kind": "delete_card", "merchant_id": "452739", "customer_number": "1234", "token": "x"}),
        json!({"command_id": "c-4", "kind": "set_status", "merchant_id": 452739, "customer_number": "1234", "status": "fraud"}),
    ]
}

/// A valid body with a few random mutations at random paths.
fn mutated() -> impl Strategy<Value = Value> {
    let bodies = valid_bodies();
    (
        proptest::sample::select(bodies),
        proptest::collection::vec(
            (0u8..4, proptest::sample::select(KEYS), leaf(), any::<u16>()),
            1..5,
        ),
    )
        .prop_map(|(mut body, edits)| {
            for (op, key, value, pick) in edits {
                // Descend into a nested object half of the time.
                let target = {
                    let nested: Vec<String> = body
                        .as_object()
                        .map(|o| {
                            o.iter()
                                .filter(|(_, v)| v.is_object())
                                .map(|(k, _)| k.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    if pick % 2 == 0 && !nested.is_empty() {
                        let k = nested[pick as usize % nested.len()].clone();
                        body.get_mut(&k)
                    } else {
                        Some(&mut body)
                    }
                };
                let Some(Value::Object(o)) = target else {
                    continue;
                };
                let existing: Vec<String> = o.keys().cloned().collect();
                match op {
                    0 if !existing.is_empty() => {
                        let k = existing[pick as usize % existing.len()].clone();
                        o.insert(k, value);
                    }
                    1 if !existing.is_empty() => {
                        let k = existing[pick as usize % existing.len()].clone();
                        o.remove(&k);
                    }
                    _ => {
                        o.insert(key.to_string(), value);
                    }
                }
            }
            body
        })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..4096),
        3 => document().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        5 => (mutated(), any::<u16>(), any::<bool>()).prop_map(|(v, cut, truncate)| {
            let mut b = serde_json::to_vec(&v).unwrap_or_default();
            if truncate && !b.is_empty() {
                b.truncate(cut as usize % b.len());
            }
            b
        }),
        1 => (any::<u8>(), 1usize..4).prop_map(|(b, k)| vec![b; MAX + k]),
    ]
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Every parser and validator on one input; returns how many parsed successfully.
fn exercise(bytes: &[u8]) -> usize {
    let mut parsed = 0;
    macro_rules! gateway {
        ($($t:ty),*) => {$(
            if let Ok(b) = parse_request::<$t>(bytes, MAX) {
                parsed += 1;
                let _ = format!("{b:?}");
                let _ = b.into_request();
            }
        )*};
    }
    macro_rules! merchant {
        ($($t:ty),*) => {$(
            if let Ok(b) = parse_request::<$t>(bytes, MAX) {
                parsed += 1;
                let _ = b.clone().into_request(452739);
                let _ = b.into_request(1);
            }
        )*};
    }
    gateway!(
        OfferBody,
        PayBody,
        PaySavedBody,
        RegisterBody,
        DeleteCardBody
    );
    merchant!(
        TokenListBody,
        TokenRemoveBody,
        TokenPayBody,
        OrderStateBody,
        CustomersListBody,
        CustomerStatusBody
    );
    if let Ok(c) = parse_request::<CommandEnvelope>(bytes, MAX) {
        parsed += 1;
        let _ = c.subject(&oneclick::subjects::Subjects::new("fuzz"), 8);
        let _ = c.partition_key();
        let _ = c.into_request();
    }
    let _ = oneclick::wire::sniff_language(bytes);
    let mut leaves = Vec::new();
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        strings(&v, &mut leaves);
    } else if let Ok(s) = std::str::from_utf8(bytes) {
        leaves.push(s.to_string());
    }
    use oneclick_actors::domain::*;
    for s in leaves.iter().take(64) {
        let _ = Amount::parse(s);
        let _ = Pan::parse(s);
        let _ = CardholderName::parse(s);
        let _ = Currency::parse(s);
        let _ = CustomerNumber::parse(s);
        let _ = cvc::Cvc::parse(s);
        let _ = expiry::Expiry::parse(s);
        let _ = order_number::OrderNumber::parse(s);
        let _ = token::Token::parse(s);
        let _ = MerchantMode::parse(s);
        let _ = status::CustomerStatus::parse(s);
        let _ = recurring::parse_date(s);
        let _ = limits::parse_time_zone(s);
    }
    parsed
}

pub fn run(run: &Run, report: &mut Report) -> anyhow::Result<()> {
    let seconds = if run.short {
        run.seconds.min(20)
    } else {
        run.seconds
    };
    let crashes_dir = run.out.join("crashes");
    std::fs::create_dir_all(&crashes_dir)?;
    // Quiet the default panic printer: every panic is counted and its input saved.
    std::panic::set_hook(Box::new(|_| {}));
    let current_started = Arc::new(AtomicU64::new(0));
    let current_input: Arc<std::sync::Mutex<Vec<u8>>> = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t0 = Instant::now();
    {
        let (current_started, current_input, dir) = (
            current_started.clone(),
            current_input.clone(),
            crashes_dir.clone(),
        );
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let started = current_started.load(Ordering::Relaxed);
            if started > 0 && (t0.elapsed().as_millis() as u64).saturating_sub(started) > 20_000 {
                let input = current_input.lock().map(|i| i.clone()).unwrap_or_default();
                let _ = std::fs::write(dir.join("hang.bin"), &input);
                eprintln!(
                    "fuzz: one input has run for 20 s: a hang; input saved to {}; aborting",
                    dir.join("hang.bin").display()
                );
                std::process::abort();
            }
        });
    }
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &seed_bytes(run.seed),
        ),
    );
    let strategy = input();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut cases, mut crashes, mut hangs, mut parsed_any) = (0u64, 0u64, 0u64, 0u64);
    let mut slowest = Duration::ZERO;
    let mut bytes_total = 0u64;
    while Instant::now() < deadline {
        let bytes = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree.current(),
            Err(_) => continue,
        };
        cases += 1;
        bytes_total += bytes.len() as u64;
        let started = Instant::now();
        if let Ok(mut c) = current_input.lock() {
            c.clear();
            c.extend_from_slice(&bytes);
        }
        current_started.store(t0.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| exercise(&bytes)));
        current_started.store(0, Ordering::Relaxed);
        let took = started.elapsed();
        slowest = slowest.max(took);
        if took > Duration::from_secs(1) {
            hangs += 1;
            std::fs::write(crashes_dir.join(format!("slow-{cases}.bin")), &bytes)?;
        }
        match outcome {
            Ok(n) if n > 0 => parsed_any += 1,
            Ok(_) => {}
            Err(_) => {
                crashes += 1;
                std::fs::write(crashes_dir.join(format!("crash-{cases}.bin")), &bytes)?;
            }
        }
    }
    let _ = std::panic::take_hook();
    report.figure("seconds", seconds as i64);
    report.figure("inputs", cases as i64);
    report.figure("inputs accepted by at least one parser", parsed_any as i64);
    report.figure("input bytes", bytes_total as i64);
    report.figure("parsers", 12i64);
    report.figure("domain validators", 13i64);
    report.figure("slowest input (ms)", slowest.as_millis() as i64);
    report.expect_eq("crashes (panics)", crashes as i64, 0);
    report.expect_eq("hangs (an input > 1 s)", hangs as i64, 0);
    report.expect_at_least(
        "inputs accepted by a parser (the fuzzer reaches past the syntax)",
        parsed_any as i64,
        1,
    );
    Ok(())
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed.wrapping_add(i as u64)).to_le_bytes());
    }
    out
}
