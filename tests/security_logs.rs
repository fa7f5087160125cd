//! Security issue 12, finding 2: logs never carry card data or secrets, at any log setting.
//! The whole README story runs with `RUST_LOG=trace` and `log.level=trace`, NATS on the shipped
//! configuration (the service connecting as user `oneclick` with its password), on SQLite and
//! on a private PostgreSQL cluster logging every statement; then every byte of the service's
//! stderr, nats-server's log and PostgreSQL's log is scanned for the PANs, CVCs, passwords and
//! key material used (attack: `oneclick_testkit::attacks::logs`). Without the ceiling of
//! `src/telemetry.rs`, async-nats' trace frames put the PAN, CVC and merchant password in the
//! service's log and the SQLite run fails.

use oneclick_testkit as support;

use support::attacks::logs::{self, Backend, Secrets};
use support::card_scan::Haystack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_of_the_whole_story_on_sqlite_hold_no_card_data_password_or_key() {
    let outcome = logs::trace_logs_carry_secrets(Backend::Sqlite).await;
    assert!(!outcome.succeeded, "{}: {}", outcome.name, outcome.evidence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_of_the_whole_story_on_postgres_hold_no_card_data_password_or_key() {
    let outcome = logs::trace_logs_carry_secrets(Backend::Postgres).await;
    assert!(!outcome.succeeded, "{}: {}", outcome.name, outcome.evidence);
}

#[test]
fn a_secret_planted_in_a_log_is_found_in_every_form() {
    let mut secrets = Secrets {
        pans: vec!["4111111111111111".into()],
        cvcs: vec!["739".into()],
        passwords: vec![("merchant".into(), "demo-password".into())],
        key_material: Vec::new(),
    };
    secrets
        .add_key_file("current = 1\nfingerprint = q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=\n");
    let clean = b"2026-12-06 20:41:07.739 UTC [4111] LOG:  statement: SELECT 1\n".repeat(50);
    let clean_log = Haystack {
        place: "clean".into(),
        bytes: clean.clone(),
        numbers_only: false,
    };
    let outcome = logs::read_logs("control", &[clean_log], &secrets);
    assert!(
        !outcome.succeeded,
        "a clean log is clean: {}",
        outcome.evidence
    );
    let plants: [&[u8]; 6] = [
        b"TRACE async_nats: PUB {\"number\":\"4111111111111111\"}",
        b"{\"fields\":{\"frame\":\"{\\\"cvc\\\":\\\"739\\\"}\"}}",
        b"password: [100, 101, 109, 111, 45, 112, 97, 115, 115, 119, 111, 114, 100]",
        b"DETAIL:  parameters: $1 = '\\x6465 6d6f'", // not a form we claim: must stay unfound
        b"key=q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=",
        b"payload=eyJudW1iZXIiOiI0MTExMTExMTExMTExMTExIn0=", // base64 of {"number":"4111…"}
    ];
    for planted in plants {
        let log = Haystack {
            place: "planted".into(),
            bytes: [&clean[..], planted].concat(),
            numbers_only: false,
        };
        let outcome = logs::read_logs("control", &[log], &secrets);
        let expected = !planted.starts_with(b"DETAIL");
        assert_eq!(
            outcome.succeeded,
            expected,
            "{}: {}",
            String::from_utf8_lossy(planted),
            outcome.evidence
        );
    }
}
