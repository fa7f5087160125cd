//! `oneclick client`: the bodies and subjects it builds, without NATS. Every body is parsed back
//! with the service's own wire types and `into_request`, so the CLI and the protocol cannot drift.

use base64::Engine as _;
use clap::Parser;
use oneclick::cli::admin::{DEMO_LOGIN, DEMO_PASSWORD, DEMO_SIGNATURE_KEY};
use oneclick::cli::client::{self, ClientArgs, Plan};
use oneclick::cli::{Cli, Command};
use oneclick::subjects::{self, Subjects};
use oneclick::wire::gateway::{DeleteCardBody, OfferBody, PayBody, PaySavedBody, RegisterBody};
use oneclick::wire::merchant::{
    CustomerStatusBody, CustomersListBody, TokenListBody, TokenPayBody, TokenRemoveBody,
};
use oneclick::wire::{parse_request, CommandKind};
use oneclick_actors::domain::signature;
use serde_json::Value;

const PAN: &str = "4111111111111111";
const CVC: &str = "737";
const PREFIX: &str = "cli_t";

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn args(argv: &[&str]) -> Result<ClientArgs, Box<dyn std::error::Error>> {
    let cli = Cli::try_parse_from(
        ["oneclick", "client"]
            .into_iter()
            .chain(argv.iter().copied()),
    )?;
    match cli.command {
        Some(Command::Client(a)) => Ok(a),
        other => Err(format!("not a client command: {other:?}").into()),
    }
}

fn plan(argv: &[&str]) -> Result<Plan, Box<dyn std::error::Error>> {
    Ok(client::plan(&args(argv)?, &Subjects::new(PREFIX), 8)?)
}

fn plan_err(argv: &[&str]) -> String {
    match args(argv).map(|a| client::plan(&a, &Subjects::new(PREFIX), 8)) {
        Ok(Ok(p)) => panic!("expected an error, got {p:?}"),
        Ok(Err(e)) => format!("{e:#}"),
        Err(e) => e.to_string(),
    }
}

fn request(argv: &[&str]) -> Result<(String, Vec<u8>), Box<dyn std::error::Error>> {
    match plan(argv)? {
        Plan::Request { subject, body } => Ok((subject, body)),
        other => Err(format!("not a request: {other:?}").into()),
    }
}

fn fault(f: oneclick_actors::fault::Fault) -> Box<dyn std::error::Error> {
    format!("fault {f:?}").into()
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<dyn std::error::Error>> {
    parse_request(body, 65536).map_err(fault)
}

fn demo_key() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(DEMO_SIGNATURE_KEY)
        .unwrap_or_default()
}

#[test]
fn offer_for_the_demo_merchant_is_signed_with_the_demo_key() -> TestResult {
    let (subject, body) = request(&["offer", "--customer", "c-1", "--amount", "10.34"])?;
    assert_eq!(subject, "cli_t.v1.gw.offer");
    let req = parse::<OfferBody>(&body)?.into_request().map_err(fault)?;
    let order = req.order;
    assert_eq!(order.merchant_id, 452739);
    assert_eq!(
        (order.amount.as_str(), order.currency.as_str()),
        ("10.34", "RUB")
    );
    let msg = signature::message("452739", &order.order_number, "10.34", "RUB", "c-1");
    signature::verify(&demo_key(), &msg, order.signature.as_deref().unwrap_or(""))?;
    Ok(())
}

#[test]
fn order_number_defaults_to_a_fresh_cli_number_and_is_kept_when_given() -> TestResult {
    let number = |argv: &[&str]| -> Result<String, Box<dyn std::error::Error>> {
        let (_, body) = request(argv)?;
        Ok(parse::<OfferBody>(&body)?.order.order_number)
    };
    let a = number(&["offer", "--customer", "c"])?;
    let b = number(&["offer", "--customer", "c"])?;
    assert_ne!(a, b);
    for n in [&a, &b] {
        let hex = n.strip_prefix("cli-").unwrap_or("");
        assert_eq!(hex.len(), 12, "{n}");
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()), "{n}");
    }
    assert_eq!(
        number(&["offer", "--customer", "c", "--order", "A-1"])?,
        "A-1"
    );
    Ok(())
}

#[test]
fn pay_body_parses_as_the_wire_type_and_verbose_never_shows_pan_or_cvc() -> TestResult {
    let argv = [
        "pay",
        "--customer",
        "c-1",
        "--card-number",
        PAN,
        "--cvc",
        CVC,
        "--expire-month",
        "11",
        "--expire-year",
        "2031",
        "--holder",
        "ANNA PETROVA",
        "--save",
        "false",
        "--language",
        "ru",
    ];
    let p = plan(&argv)?;
    assert_eq!(p.subject(), "cli_t.v1.gw.pay");
    let shown = p.redacted_body();
    assert!(!shown.contains(PAN) && !shown.contains("411111"), "{shown}");
    assert!(!shown.contains(&format!("\"{CVC}\"")), "{shown}");
    assert!(shown.contains("[REDACTED]"));
    let body = parse::<PayBody>(&p.body()?)?;
    assert_eq!(body.language.as_deref(), Some("RU"));
    let req = body.into_request().map_err(fault)?;
    assert_eq!(req.card.number.expose(), PAN);
    assert_eq!(req.card.cvc.as_ref().map(|c| c.expose()), Some(CVC));
    assert_eq!(
        (
            req.card.expiry_month.as_str(),
            req.card.expiry_year.as_str()
        ),
        ("11", "2031")
    );
    assert_eq!(req.card.holder, "ANNA PETROVA");
    assert_eq!(req.save, Some(false));
    assert!(!req.recurring.any_present());
    assert!(req.order.signature.is_some());
    Ok(())
}

#[test]
fn absent_save_flag_stays_absent_so_the_engine_reads_yes() -> TestResult {
    let (_, body) = request(&["pay", "--customer", "c", "--card-number", PAN])?;
    assert_eq!(
        parse::<PayBody>(&body)?.into_request().map_err(fault)?.save,
        None
    );
    Ok(())
}

#[test]
fn recurring_pay_is_unsigned_and_its_flags_set_the_indicator() -> TestResult {
    let (_, body) = request(&[
        "pay",
        "--card-number",
        PAN,
        "--recurring-min",
        "1.00",
        "--recurring-max",
        "100.00",
        "--recurring-period",
        "30",
        "--recurring-max-date",
        "31.12.2030",
    ])?;
    let req = parse::<PayBody>(&body)?.into_request().map_err(fault)?;
    assert_eq!(req.order.customer_number, None);
    assert_eq!(req.order.signature, None);
    assert_eq!(req.recurring.indicator.as_deref(), Some("1"));
    assert_eq!(req.recurring.period_days.as_deref(), Some("30"));
    assert_eq!(req.recurring.max_date.as_deref(), Some("31.12.2030"));
    Ok(())
}

#[test]
fn other_merchants_need_a_signature_or_key_and_credentials() -> TestResult {
    let err = plan_err(&["offer", "--merchant", "7", "--customer", "c"]);
    assert!(err.contains("--signature-key"), "{err}");
    let key = base64::engine::general_purpose::STANDARD.encode(b"merchant-7-key");
    let (_, body) = request(&[
        "offer",
        "--merchant",
        "7",
        "--customer",
        "c",
        "--order",
        "o-1",
        "--signature-key",
        &key,
    ])?;
    let order = parse::<OfferBody>(&body)?.order;
    let msg = signature::message("7", "o-1", "10.00", "RUB", "c");
    signature::verify(
        b"merchant-7-key",
        &msg,
        order.signature.as_deref().unwrap_or(""),
    )?;
    let (_, body) = request(&[
        "offer",
        "--merchant",
        "7",
        "--customer",
        "c",
        "--signature",
        "abc",
    ])?;
    assert_eq!(
        parse::<OfferBody>(&body)?.order.signature.as_deref(),
        Some("abc")
    );
    let (_, body) = request(&["offer", "--customer", "c", "--no-signature"])?;
    assert_eq!(parse::<OfferBody>(&body)?.order.signature, None);

    let err = plan_err(&["token-list", "--merchant", "7", "--customer", "c"]);
    assert!(err.contains("--login"), "{err}");
    let err = plan_err(&[
        "token-list",
        "--merchant",
        "7",
        "--customer",
        "c",
        "--login",
        "u",
    ]);
    assert!(err.contains("--password"), "{err}");
    Ok(())
}

#[test]
fn pay_saved_register_and_delete_card_parse_as_their_wire_types() -> TestResult {
    let (subject, body) = request(&["pay-saved", "--customer", "c", "--token", "T", "--cvc", CVC])?;
    assert_eq!(subject, "cli_t.v1.gw.pay_saved");
    let req = parse::<PaySavedBody>(&body)?
        .into_request()
        .map_err(fault)?;
    assert_eq!(
        (req.token.as_str(), req.cvc.as_ref().map(|c| c.expose())),
        ("T", Some(CVC))
    );

    let (subject, body) = request(&["register", "--customer", "c", "--card-number", PAN])?;
    assert_eq!(subject, "cli_t.v1.gw.register");
    let req = parse::<RegisterBody>(&body)?
        .into_request()
        .map_err(fault)?;
    assert_eq!(req.card.number.expose(), PAN);

    let (subject, body) = request(&[
        "delete-card",
        "--customer",
        "c",
        "--token",
        "T",
        "--command-id",
        "k-1",
    ])?;
    assert_eq!(subject, "cli_t.v1.gw.delete_card");
    let req = parse::<DeleteCardBody>(&body)?
        .into_request()
        .map_err(fault)?;
    assert_eq!(req.command_id.as_deref(), Some("k-1"));
    Ok(())
}

#[test]
fn merchant_bodies_carry_the_demo_credentials_and_use_the_original_field_names() -> TestResult {
    let (subject, body) = request(&["token-list", "--customer", "c-1"])?;
    assert_eq!(subject, "cli_t.v1.merchant.452739.token.list");
    let json: Value = serde_json::from_slice(&body)?;
    assert_eq!(json["customernumber"], "c-1");
    assert_eq!(json["merchant"]["login"], DEMO_LOGIN);
    let call = parse::<TokenListBody>(&body)?
        .into_request(452739)
        .map_err(fault)?;
    assert_eq!(call.credentials.password.expose(), DEMO_PASSWORD);
    assert_eq!(call.request.customer_number, "c-1");

    let (subject, body) = request(&["token-remove", "--customer", "c", "--token", "T"])?;
    assert_eq!(subject, "cli_t.v1.merchant.452739.token.remove");
    assert_eq!(
        parse::<TokenRemoveBody>(&body)?
            .into_request(452739)
            .map_err(fault)?
            .request
            .token,
        "T"
    );

    let (subject, body) = request(&[
        "token-pay",
        "--customer",
        "c",
        "--token",
        "T",
        "--order",
        "tp-1",
        "--amount",
        "5.00",
    ])?;
    assert_eq!(subject, "cli_t.v1.merchant.452739.token.pay");
    let req = parse::<TokenPayBody>(&body)?
        .into_request(452739)
        .map_err(fault)?
        .request;
    assert_eq!((req.token_type, req.token.as_str()), (5, "T"));
    assert_eq!(req.order.customer_number.as_deref(), Some("c"));
    assert_eq!(req.order.amount, "5.00");

    let (subject, body) = request(&["customers", "--search", "c", "--limit", "5"])?;
    assert_eq!(subject, "cli_t.v1.merchant.452739.customers.list");
    let req = parse::<CustomersListBody>(&body)?
        .into_request(452739)
        .map_err(fault)?
        .request;
    assert_eq!(
        (req.search.as_deref(), req.offset, req.limit),
        (Some("c"), 0, 5)
    );

    let (subject, body) = request(&["status", "--customer", "c", "--status", "deny"])?;
    assert_eq!(subject, "cli_t.v1.merchant.452739.customers.status");
    let req = parse::<CustomerStatusBody>(&body)?
        .into_request(452739)
        .map_err(fault)?
        .request;
    assert_eq!(req.status, "deny");

    let (subject, _) = request(&["order-state", "--order", "o-1"])?;
    assert_eq!(subject, "cli_t.v1.merchant.452739.order.state");
    Ok(())
}

#[test]
fn verbose_body_hides_the_merchant_password() -> TestResult {
    let shown = plan(&["token-list", "--customer", "c"])?.redacted_body();
    assert!(!shown.contains(DEMO_PASSWORD), "{shown}");
    Ok(())
}

#[test]
fn unknown_status_is_refused_by_the_flag_parser() {
    let err = plan_err(&["status", "--customer", "c", "--status", "banned"]);
    assert!(err.contains("banned"), "{err}");
}

#[test]
fn durable_set_status_goes_to_the_customers_partition_with_its_command_id() -> TestResult {
    let p = plan(&[
        "command",
        "--kind",
        "set_status",
        "--customer",
        "c<1>",
        "--status",
        "deny",
        "--command-id",
        "cmd-1",
    ])?;
    let Plan::Command {
        subject,
        envelope,
        wait,
    } = p
    else {
        return Err("not a command".into());
    };
    assert!(wait);
    assert_eq!(envelope.command_id, "cmd-1");
    assert_eq!(envelope.kind(), CommandKind::SetStatus);
    let partition = subjects::partition(&subjects::customer_partition_key("c1"), 8);
    assert_eq!(
        subject,
        Subjects::new(PREFIX).command(partition, CommandKind::SetStatus)
    );
    let json = serde_json::to_value(&envelope)?;
    assert_eq!(
        json,
        serde_json::json!({"command_id":"cmd-1","merchant_id":452739,"kind":"set_status",
                           "customer_number":"c<1>","status":"deny"})
    );
    Ok(())
}

#[test]
fn durable_commands_check_their_fields_and_get_a_fresh_id() -> TestResult {
    let err = plan_err(&["command", "--kind", "set_status", "--customer", "c"]);
    assert!(err.contains("--status"), "{err}");
    let err = plan_err(&["command", "--kind", "recurring_charge"]);
    assert!(err.contains("--initial-order"), "{err}");
    let p = plan(&[
        "command",
        "--kind",
        "token_pay",
        "--customer",
        "c",
        "--token",
        "T",
        "--no-wait",
        "--partitions",
        "1",
    ])?;
    let Plan::Command {
        subject,
        envelope,
        wait,
    } = p
    else {
        return Err("not a command".into());
    };
    assert!(!wait);
    assert_eq!(subject, "cli_t.v1.cmd.0.token_pay");
    assert!(envelope.command_id.starts_with("cli-"));
    let json = serde_json::to_value(&envelope)?;
    assert!(json["signature"].is_string(), "{json}");
    Ok(())
}

#[test]
fn health_and_raw() -> TestResult {
    assert_eq!(request(&["health"])?.0, "cli_t.v1.health");
    let (subject, body) = request(&["raw", "--subject", "x.y", "--json", "{not json"])?;
    assert_eq!(
        (subject.as_str(), body.as_slice()),
        ("x.y", b"{not json".as_slice())
    );
    Ok(())
}

#[test]
fn a_fault_is_the_originals_top_level_fault_object() {
    assert!(client::is_fault(
        &serde_json::json!({"fault":{"detail":"x","faultcode":4,"faultstring":1}})
    ));
    assert!(!client::is_fault(&serde_json::json!({"status":"new"})));
    assert!(!client::is_fault(&serde_json::json!([])));
}

#[test]
fn replies_print_pretty_with_the_services_field_order() -> TestResult {
    let sent = br#"[{"token":"T","post":"1111","bin":411111,"active":true,"assets":[],"x":{ },"s":"a\"b,:{[\\"}]"#;
    let shown = client::pretty_in_order(sent);
    assert_eq!(
        serde_json::from_str::<Value>(&shown)?,
        serde_json::from_slice::<Value>(sent)?
    );
    let at = |k: &str| shown.find(&format!("\"{k}\"")).unwrap_or(usize::MAX);
    assert!(at("token") < at("post") && at("post") < at("bin") && at("bin") < at("active"));
    // With fields already sorted, the text is exactly serde_json's pretty form.
    let sorted = br#"{"a":[1,2,{"b":null}],"c":{},"d":"x:y, z","e":[]}"#;
    let value: Value = serde_json::from_slice(sorted)?;
    assert_eq!(
        client::pretty_in_order(sorted),
        serde_json::to_string_pretty(&value)?
    );
    Ok(())
}
