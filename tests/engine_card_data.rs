//! Card data at rest (R8, docs/rules.md §3): after a run with known test cards, no column of any table
//! holds a PAN, a CVC, or an unkeyed SHA-256 of a PAN (as text, hex or raw bytes); and a
//! ciphertext moved to another card row does not decrypt, so the payment fails instead of
//! charging the other card. Each test runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use oneclick_testkit as support;
use oneclick_testkit::both_backends;

use sha2::{Digest, Sha256};

use oneclick_actors::engine::requests::*;
use oneclick_actors::Fault;
use support::chaos::{contains, hex, needles, postgres_values, unhex, Needle};
use support::engine::*;

/// Test cards of the run (all pass the Luhn check).
const RECURRING_CARD: &str = "4012888888881881";
const LEAVER_CARD: &str = "5105105105105100";
const PANS: &[&str] = &[
    VISA_OK,
    MASTERCARD_OK,
    MIR_OK,
    AMEX_OK,
    VISA_DECLINED,
    VISA_TIMEOUT,
    RECURRING_CARD,
    LEAVER_CARD,
];
/// Every CVC sent in the run. None of them is a plausible value of its own in the schema
/// (amounts, ids, counters, years), so finding one as a whole value means it was stored.
const CVCS: &[&str] = &[CVC, "392", "519", "6158", "273"];
const CUSTOMER: &str = "scan-customer-1";

/// Every PAN of the run in the forms a careless implementation would store it and its unkeyed
/// SHA-256; every CVC as a whole value and its SHA-256 (`support::chaos::needles`).
fn forbidden_needles() -> Vec<Needle> {
    let pans: Vec<String> = PANS.iter().map(|p| p.to_string()).collect();
    let cvcs: Vec<String> = CVCS.iter().map(|c| c.to_string()).collect();
    needles(&pans, &cvcs)
}

/// One stored value: where it came from and its bytes (text as UTF-8, binary as raw bytes).
struct Value {
    place: String,
    bytes: Vec<u8>,
}

/// Every value of every column of every table of the test database.
fn every_value(h: &Harness) -> Vec<Value> {
    let mut values = Vec::new();
    match h.backend {
        Backend::Postgres => {
            let Ok(stored) = postgres_values(|sql| Ok::<_, std::convert::Infallible>(h.texts(sql)));
            for v in stored {
                values.push(Value {
                    place: match v.column {
                        Some(column) => format!("{}.{column}", v.table),
                        None => format!("{} (row)", v.table),
                    },
                    bytes: v.bytes,
                });
            }
        }
        Backend::Sqlite => {
            let tables = h.texts("SELECT name AS v FROM sqlite_master WHERE type = 'table'");
            for table in tables.into_iter().flatten() {
                let columns = h.texts(&format!(
                    "SELECT name AS v FROM pragma_table_info('{table}')"
                ));
                for name in columns.into_iter().flatten() {
                    // hex() gives the stored bytes: a blob's raw bytes, a text's UTF-8.
                    for v in h
                        .texts(&format!("SELECT hex(\"{name}\") AS v FROM \"{table}\""))
                        .into_iter()
                        .flatten()
                    {
                        values.push(Value {
                            place: format!("{table}.{name}"),
                            bytes: unhex(&v),
                        });
                    }
                }
            }
        }
    }
    values
}

fn places_holding(values: &[Value], needle: &Needle) -> Vec<String> {
    let mut places: Vec<String> = values
        .iter()
        .filter(|v| contains(&v.bytes, needle))
        .map(|v| v.place.clone())
        .collect();
    places.dedup();
    places
}

/// A run touching every path that carries card data.
async fn run_with_known_cards(h: &Harness) {
    let pay = |number: &'static str, cvc: &'static str, amount: &'static str| {
        let order = h.order(A, &h.next_order(), amount, CUSTOMER);
        h.engine.pay_new_card(PayNewCardRequest {
            order,
            card: Harness::card(number, Some(cvc)),
            save: None,
            recurring: RecurringInput::default(),
        })
    };
    // New-card payments with save (one repeated with another CVC: a replay).
    let visa = pay(VISA_OK, CVC, "100.00").await.unwrap();
    assert!(visa.card_saved);
    let mastercard = pay(MASTERCARD_OK, "392", "100.00").await.unwrap();
    assert!(mastercard.card_saved);
    let amex = pay(AMEX_OK, "6158", "100.00").await.unwrap();
    assert!(amex.card_saved);
    let repeat = h
        .engine
        .pay_new_card(PayNewCardRequest {
            order: h.order(A, &visa.order_number, "100.00", CUSTOMER),
            card: Harness::card(VISA_OK, Some("273")),
            save: None,
            recurring: RecurringInput::default(),
        })
        .await
        .unwrap();
    assert_eq!(repeat, visa);
    // Declined and timed out: nothing saved, but the attempts are stored.
    assert!(!pay(VISA_DECLINED, CVC, "10.00").await.unwrap().card_saved);
    assert!(!pay(VISA_TIMEOUT, CVC, "10.00").await.unwrap().card_saved);
    // A registration.
    let order = h.order(A, &h.next_order(), "0", CUSTOMER);
    let registered = h
        .engine
        .register(RegisterRequest {
            order,
            card: Harness::card(MIR_OK, Some(CVC)),
        })
        .await
        .unwrap();
    assert!(registered.card_saved);
    // Saved-card payments with CVC, Token Pay.
    let visa_token = visa.token.clone().unwrap();
    assert!(h
        .pay_saved(A, CUSTOMER, "10.00", &visa_token, Some("519"))
        .await
        .unwrap()
        .is_approved());
    let amex_token = amex.token.clone().unwrap();
    assert!(h
        .pay_saved(A, CUSTOMER, "10.00", &amex_token, Some("6158"))
        .await
        .unwrap()
        .is_approved());
    assert!(h
        .token_pay(A, CUSTOMER, "10.00", mastercard.token.as_deref().unwrap())
        .await
        .unwrap()
        .is_approved());
    // A recurring initial payment and a charge.
    let initial = h.start_agreement(A, RECURRING_CARD, "392").await;
    // A period later (the initial payment starts the period).
    h.exec("UPDATE recurring_agreements SET last_charge_on = '2020-01-01'");
    let charged = h
        .engine
        .recurring_charge(RecurringChargeRequest {
            merchant_id: A,
            initial_order_number: initial,
            order_number: h.next_order(),
            amount: "20.00".into(),
            currency: "RUB".into(),
        })
        .await
        .unwrap();
    assert!(charged.is_approved());
    // A deletion, and a customer who leaves.
    h.delete(
        A,
        CUSTOMER,
        mastercard.token.as_deref().unwrap(),
        Some("delete-1"),
    )
    .await
    .unwrap();
    let leaver = h.order(B, &h.next_order(), "10.00", "leaver");
    let saved = h
        .engine
        .pay_new_card(PayNewCardRequest {
            order: leaver,
            card: Harness::card(LEAVER_CARD, Some("519")),
            save: None,
            recurring: RecurringInput::default(),
        })
        .await
        .unwrap();
    assert!(saved.card_saved);
    h.set_status(B, "leaver", "leave", Some("leave-1"))
        .await
        .unwrap();
}

async fn no_column_of_any_table_holds_a_pan_a_cvc_or_an_unkeyed_hash_of_a_pan(h: Harness) {
    run_with_known_cards(&h).await;
    let values = every_value(&h);
    assert!(values.len() > 200, "the scan saw {} values", values.len());

    // The scanner finds what is legitimately stored, in text and in binary columns.
    let fingerprint = h.keyring.fingerprint(VISA_OK.as_bytes()).to_vec();
    let controls = [
        Needle {
            what: "customer number".into(),
            bytes: CUSTOMER.as_bytes().to_vec(),
            whole: true,
        },
        Needle {
            what: "merchant id".into(),
            bytes: A.to_string().into_bytes(),
            whole: true,
        },
        Needle {
            what: "BIN".into(),
            bytes: b"411111".to_vec(),
            whole: true,
        },
        Needle {
            what: "keyed fingerprint (binary)".into(),
            bytes: fingerprint,
            whole: false,
        },
    ];
    for control in &controls {
        assert!(
            !places_holding(&values, control).is_empty(),
            "the scan did not find the {}",
            control.what
        );
    }

    let mut found = Vec::new();
    for needle in forbidden_needles() {
        for place in places_holding(&values, &needle) {
            found.push(format!("{} in {place}", needle.what));
        }
    }
    assert!(found.is_empty(), "card data at rest: {found:#?}");

    // SQLite: not even in the raw database and WAL files (free pages included).
    if h.backend == Backend::Sqlite {
        let path = h.db.url.trim_start_matches("sqlite://").to_string();
        for file in [path.clone(), format!("{path}-wal")] {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            for needle in forbidden_needles().into_iter().filter(|n| !n.whole) {
                assert!(
                    !contains(&bytes, &needle),
                    "{} in the file {file}",
                    needle.what
                );
            }
        }
    }

    // Negative control: card data planted on purpose is found, in text and in binary columns.
    let sha = hex(&Sha256::digest(VISA_OK.as_bytes()));
    h.exec(&format!(
        "UPDATE customers SET customer_number = 'planted-{VISA_OK}-{CVC}'"
    ));
    let blob = match h.backend {
        Backend::Postgres => format!("decode('{sha}', 'hex')"),
        Backend::Sqlite => format!("X'{sha}'"),
    };
    h.exec(&format!(
        "UPDATE orders SET request_digest = {blob} WHERE order_number = 'order-1'"
    ));
    let values = every_value(&h);
    let found: Vec<String> = forbidden_needles()
        .iter()
        .flat_map(|n| {
            places_holding(&values, n)
                .into_iter()
                .map(move |p| format!("{} in {p}", n.what))
        })
        .collect();
    for expected in [
        "PAN of 411111…1111 in customers.customer_number".to_string(),
        format!("CVC {CVC} in customers.customer_number"),
        "SHA-256 of the PAN, raw of 411111…1111 in orders.request_digest".to_string(),
    ] {
        assert!(
            found.contains(&expected),
            "the scan missed the planted {expected}: {found:#?}"
        );
    }
}

async fn a_ciphertext_moved_to_another_card_row_does_not_decrypt(h: Harness) {
    let visa = h.save_card(A, "c1", VISA_OK).await;
    let mastercard = h.save_card(A, "c1", MASTERCARD_OK).await;
    let other_customer = h.save_card(A, "c2", MIR_OK).await;
    let copy = |from: &str, to: &str| {
        h.exec(&format!(
            "UPDATE cards SET \
             pan_ciphertext = (SELECT c.pan_ciphertext FROM cards c WHERE c.token = '{from}'), \
             key_version = (SELECT c.key_version FROM cards c WHERE c.token = '{from}') \
             WHERE token = '{to}'"
        ));
    };

    // The Visa's ciphertext in the Mastercard's row: paying with the Mastercard fails.
    copy(&visa, &mastercard);
    let (before, calls) = (h.counts(), h.acquirer.calls());
    assert_eq!(
        fault_of(h.pay_saved(A, "c1", "10.00", &mastercard, Some(CVC)).await),
        Fault::Internal
    );
    assert_eq!(
        fault_of(h.token_pay(A, "c1", "10.00", &mastercard).await),
        Fault::Internal
    );
    assert_eq!(
        (h.counts(), h.acquirer.calls()),
        (before, calls),
        "nothing charged, nothing stored"
    );

    // Another customer's ciphertext in this customer's row: the same.
    copy(&other_customer, &visa);
    assert_eq!(
        fault_of(h.pay_saved(A, "c1", "10.00", &visa, Some(CVC)).await),
        Fault::Internal
    );
    assert_eq!(h.acquirer.calls(), calls);

    // A ciphertext relabelled with another key version does not open either.
    h.exec(&format!(
        "UPDATE cards SET key_version = 2 WHERE token = '{other_customer}'"
    ));
    assert_eq!(
        fault_of(h.token_pay(A, "c2", "10.00", &other_customer).await),
        Fault::Internal
    );
    h.exec(&format!(
        "UPDATE cards SET key_version = 1 WHERE token = '{other_customer}'"
    ));

    // The rows left as they were still pay, with their own card.
    let paid = h
        .token_pay(A, "c2", "10.00", &other_customer)
        .await
        .unwrap();
    assert!(paid.is_approved());
    assert_eq!(h.acquirer.last().last4, "0004");
}

/// Key rotation (`oneclick admin keys rotate`) re-encrypts every card and agreement to the new
/// current key, a batch per transaction, without waiting for rows a payment holds: on
/// PostgreSQL a card locked by another transaction is skipped by one batch (which still
/// finishes while the lock is held) and rotated by the next. Every rotated ciphertext opens
/// under the new key, bound to its own row.
async fn key_rotation_re_encrypts_every_card_and_skips_rows_a_payment_holds(h: Harness) {
    use oneclick_actors::crypto::{agreement_aad, card_owner_aad};
    use oneclick_actors::vault::keys::{rotate_batch, RotateBatch};
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(h.save_card(A, &format!("rot-{i}"), PANS[i % 3]).await);
    }
    h.start_agreement(A, RECURRING_CARD, "392").await;
    let rotated = std::sync::Arc::new(h.rotated_keyring());
    let rotate = |batch: i64| {
        let (pool, keyring) = (h.pool.clone(), rotated.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut conn = pool.get().unwrap();
            let _ = tx.send(rotate_batch(&mut conn, &keyring, RotateBatch { batch }).unwrap());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the rotation batch finished without waiting")
    };
    // A batch of 2 rotates at most 2 cards and 2 agreements.
    assert_eq!(rotate(2), 3, "2 cards and the agreement");
    let on_new_key = "SELECT COUNT(*) AS n FROM cards WHERE key_version = 2";
    assert_eq!(h.number(on_new_key), 2);
    if h.backend == Backend::Postgres {
        // A payment's transaction holds one of the cards left.
        let mut other = RawConn::open(&h.db);
        other.exec("BEGIN");
        let held = other.exec(&format!(
            "SELECT id FROM cards WHERE token = '{}' AND key_version = 1 FOR UPDATE",
            tokens[4]
        ));
        assert_eq!(held, 1);
        assert_eq!(rotate(100), 2, "the two cards nobody holds");
        assert_eq!(h.number(on_new_key), 4);
        other.exec("COMMIT");
    }
    let left = 5 - h.number(on_new_key) as usize;
    assert_eq!(rotate(100), left, "the rest");
    assert_eq!(rotate(100), 0, "rotation complete");
    assert_eq!(h.number(on_new_key), 5);
    assert_eq!(
        h.number("SELECT COUNT(*) AS n FROM recurring_agreements WHERE key_version = 2"),
        1
    );
    // Each ciphertext opens under the new key, bound to its own row.
    for (i, token) in tokens.iter().enumerate() {
        let blob = unhex(
            &h.text(&format!(
                "SELECT {} AS v FROM cards WHERE token = '{token}'",
                hex_of(h.backend, "pan_ciphertext")
            ))
            .unwrap(),
        );
        // Rotation also re-seals to the owner-bound associated data (AAD version 2).
        let customer_id = h.number(&format!(
            "SELECT customer_id AS n FROM cards WHERE token = '{token}' AND aad_version = 2"
        ));
        let number = h
            .text(&format!(
                "SELECT customer_number AS v FROM customers WHERE id = {customer_id}"
            ))
            .unwrap();
        let pan = rotated
            .open(2, &blob, &card_owner_aad(customer_id, &number, token))
            .unwrap();
        assert_eq!(&pan[..], PANS[i % 3].as_bytes(), "card {i}");
    }
    let (merchant, number, blob) = (
        h.number("SELECT merchant_id AS n FROM recurring_agreements"),
        h.text("SELECT order_number AS v FROM recurring_agreements")
            .unwrap(),
        unhex(
            &h.text(&format!(
                "SELECT {} AS v FROM recurring_agreements",
                hex_of(h.backend, "pan_ciphertext")
            ))
            .unwrap(),
        ),
    );
    let pan = rotated
        .open(2, &blob, &agreement_aad(merchant, &number))
        .unwrap();
    assert_eq!(&pan[..], RECURRING_CARD.as_bytes());
}

/// SQL giving column `column` as lower-case hex text on `backend`.
fn hex_of(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Postgres => format!("encode({column}, 'hex')"),
        Backend::Sqlite => format!("lower(hex({column}))"),
    }
}

both_backends!(
    no_column_of_any_table_holds_a_pan_a_cvc_or_an_unkeyed_hash_of_a_pan,
    a_ciphertext_moved_to_another_card_row_does_not_decrypt,
    key_rotation_re_encrypts_every_card_and_skips_rows_a_payment_holds
);
