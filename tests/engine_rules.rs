//! The product rules R1–R18 of docs/rules.md, exercised through the engine's actors against a real
//! database: each test runs on SQLite and on PostgreSQL (`<name>::on_sqlite`, `<name>::on_postgres`).
//! Also: union joins refused on colliding customer numbers, supervision of customer actors, idle
//! stop, and bad input (every invalid field gets its fault and changes nothing).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use oneclick_testkit as support;
use oneclick_testkit::both_backends;

use std::time::Duration;

use oneclick_actors::acquirer::AuthKind;
use oneclick_actors::domain::{CustomerStatus, OrderState, ResponseCode};
use oneclick_actors::engine::replies::{Offer, PaymentResult, TokenListEntry};
use oneclick_actors::engine::requests::*;
use oneclick_actors::vault::merchants::JoinOutcome;
use oneclick_actors::Fault;
use support::engine::*;

/// A well-formed token no card has.
const UNKNOWN_TOKEN: &str = "0F8B3A1C-5D2E-4F60-9A7B-1C2D3E4F5A6B";

fn recurring(min: &str, max: &str, period: &str, max_date: &str) -> RecurringInput {
    RecurringInput {
        indicator: Some("1".into()),
        min_amount: Some(min.into()),
        max_amount: Some(max.into()),
        period_days: Some(period.into()),
        max_date: Some(max_date.into()),
    }
}

/// Starts a recurring agreement at merchant A with a new Visa card; returns the initial order.
async fn start_agreement(h: &Harness) -> String {
    let initial = h.next_order();
    let paid = h
        .engine
        .pay_new_card(PayNewCardRequest {
            order: h.plain_order(A, &initial, "50.00"),
            card: Harness::card(VISA_OK, Some(CVC)),
            save: None,
            recurring: recurring("10.00", "500.00", "30", "31.12.2030"),
        })
        .await
        .expect("initial recurring payment");
    assert!(paid.is_approved(), "{paid:?}");
    assert_eq!(paid.kind, "recurring_initial");
    initial
}

async fn charge(h: &Harness, initial: &str, amount: &str) -> Result<PaymentResult, Fault> {
    h.engine
        .recurring_charge(RecurringChargeRequest {
            merchant_id: A,
            initial_order_number: initial.into(),
            order_number: h.next_order(),
            amount: amount.into(),
            currency: "RUB".into(),
        })
        .await
        .map_err(|e| e.fault())
}

fn tokens(offer: &Offer) -> Vec<String> {
    offer.cards.iter().map(|c| c.token.clone()).collect()
}

// ---- R1 --------------------------------------------------------------------------------------

async fn r1_customer_number_longer_than_32_characters_as_received_is_a_fault(h: Harness) {
    let before = h.counts();
    let too_long = "c".repeat(33);
    assert_eq!(fault_of(h.offer(A, &too_long).await), Fault::FieldTooLong);
    assert_eq!(
        fault_of(h.pay_new(A, &too_long, "10.00", VISA_OK, None).await),
        Fault::FieldTooLong
    );
    // 33 characters as received, 31 after stripping: still too long (the limit is on the raw value).
    let long_with_prohibited = format!("<{}>", "c".repeat(31));
    assert_eq!(
        fault_of(
            h.pay_new(A, &long_with_prohibited, "10.00", VISA_OK, None)
                .await
        ),
        Fault::FieldTooLong
    );
    assert_eq!(h.counts(), before);
    assert_eq!(h.acquirer.calls(), 0);

    let longest = "c".repeat(32);
    assert!(h
        .pay_new(A, &longest, "10.00", VISA_OK, None)
        .await
        .unwrap()
        .is_approved());
}

async fn r1_prohibited_characters_are_stripped_from_the_customer_number(h: Harness) {
    let raw = r#"<c"u=s/t\o'm(e)r;1#>"#;
    let paid = h.pay_new(A, raw, "10.00", VISA_OK, None).await.unwrap();
    assert!(paid.is_approved() && paid.card_saved, "{paid:?}");
    assert_eq!(
        h.texts("SELECT customer_number AS v FROM customers"),
        vec![Some("customer1".to_string())]
    );
    // The stripped number is the same customer.
    let offer = h.offer(A, "customer1").await.unwrap();
    assert_eq!(tokens(&offer), vec![paid.token.clone().unwrap()]);
    let listed = h.token_list(A, "customer1").await.unwrap();
    assert_eq!(listed.len(), 1);
}

async fn r1_customer_number_empty_after_stripping_is_a_fault(h: Harness) {
    let before = h.counts();
    for raw in ["<>", "()#;", "\"'=/\\"] {
        assert_eq!(
            fault_of(h.offer(A, raw).await),
            Fault::InvalidCustomerNumber,
            "{raw}"
        );
        assert_eq!(
            fault_of(h.pay_new(A, raw, "10.00", VISA_OK, None).await),
            Fault::InvalidCustomerNumber,
            "{raw}"
        );
    }
    assert_eq!(
        fault_of(h.token_list(A, "").await),
        Fault::InvalidCustomerNumber
    );
    assert_eq!(h.counts(), before);
}

async fn r1_a_merchant_not_enabled_for_one_click_cannot_send_a_customer_number(h: Harness) {
    h.update_merchant(A, |m| m.oneclick_enabled = false);
    let before = h.counts();
    assert_eq!(fault_of(h.offer(A, "c1").await), Fault::OneClickDisabled);
    assert_eq!(
        fault_of(h.pay_new(A, "c1", "10.00", VISA_OK, None).await),
        Fault::OneClickDisabled
    );
    assert_eq!(
        fault_of(h.register(A, "c1", VISA_OK).await),
        Fault::OneClickDisabled
    );
    assert_eq!(h.counts(), before);
    // Plain payments without a customer number still work.
    let order = h.next_order();
    let paid = h
        .engine
        .pay_new_card(PayNewCardRequest {
            order: h.plain_order(A, &order, "10.00"),
            card: Harness::card(VISA_OK, Some(CVC)),
            save: None,
            recurring: RecurringInput::default(),
        })
        .await
        .unwrap();
    assert!(
        paid.is_approved() && !paid.card_saved && paid.token.is_none(),
        "{paid:?}"
    );
    assert_eq!(h.count_rows("customers"), 0);
    assert_eq!(h.count_rows("cards"), 0);
}

// ---- R2 --------------------------------------------------------------------------------------

async fn r2_missing_signature_is_a_fault_and_nothing_is_stored(h: Harness) {
    let before = h.counts();
    let mut order = h.order(A, &h.next_order(), "10.00", "c1");
    order.signature = None;
    let card = Harness::card(VISA_OK, Some(CVC));
    let new_card = PayNewCardRequest {
        order: order.clone(),
        card: card.clone(),
        save: None,
        recurring: RecurringInput::default(),
    };
    assert_eq!(
        fault_of(h.engine.pay_new_card(new_card).await),
        Fault::InvalidSignature
    );
    assert_eq!(
        fault_of(
            h.engine
                .register(RegisterRequest {
                    order: order.clone(),
                    card
                })
                .await
        ),
        Fault::InvalidSignature
    );
    assert_eq!(
        fault_of(
            h.engine
                .offer(OfferRequest {
                    order: order.clone()
                })
                .await
        ),
        Fault::InvalidSignature
    );
    let saved = PaySavedCardRequest {
        order,
        token: UNKNOWN_TOKEN.into(),
        cvc: Some(SecretString::new(CVC)),
    };
    assert_eq!(
        fault_of(h.engine.pay_saved_card(saved).await),
        Fault::InvalidSignature
    );
    assert_eq!(h.counts(), before);
    assert_eq!(h.acquirer.calls(), 0);
}

async fn r2_wrong_signature_is_a_fault_and_nothing_is_stored(h: Harness) {
    let before = h.counts();
    let number = h.next_order();
    let wrong = [
        // Another merchant's key.
        Harness::sign(B, &number, "10.00", "RUB", "c1"),
        // Another amount.
        Harness::sign(A, &number, "10.01", "RUB", "c1"),
        // Another customer.
        Harness::sign(A, &number, "10.00", "RUB", "c2"),
        String::new(),
        "not base64!".into(),
    ];
    for signature in wrong {
        let mut order = h.order(A, &number, "10.00", "c1");
        order.signature = Some(signature);
        let req = PayNewCardRequest {
            order,
            card: Harness::card(VISA_OK, Some(CVC)),
            save: None,
            recurring: RecurringInput::default(),
        };
        assert_eq!(
            fault_of(h.engine.pay_new_card(req).await),
            Fault::InvalidSignature
        );
    }
    assert_eq!(h.counts(), before);
    assert_eq!(h.acquirer.calls(), 0);
}

async fn r2_signature_is_computed_over_the_customer_number_as_received(h: Harness) {
    let raw = "<42>";
    let number = h.next_order();
    // Signed over the stripped value: refused.
    let mut order = h.order(A, &number, "10.00", raw);
    order.signature = Some(Harness::sign(A, &number, "10.00", "RUB", "42"));
    let req = PayNewCardRequest {
        order,
        card: Harness::card(VISA_OK, Some(CVC)),
        save: None,
        recurring: RecurringInput::default(),
    };
    assert_eq!(
        fault_of(h.engine.pay_new_card(req).await),
        Fault::InvalidSignature
    );
    assert_eq!(h.count_rows("orders"), 0);
    // Signed over the raw value: accepted, stored for the stripped number.
    let paid = h.pay_new(A, raw, "10.00", VISA_OK, None).await.unwrap();
    assert!(paid.is_approved());
    assert_eq!(
        h.texts("SELECT customer_number AS v FROM customers"),
        vec![Some("42".to_string())]
    );
}

// ---- R3 --------------------------------------------------------------------------------------

async fn r3_customer_number_with_any_recurring_field_is_a_fault(h: Harness) {
    let before = h.counts();
    let variants = [
        recurring("10.00", "500.00", "30", "31.12.2030"),
        RecurringInput {
            indicator: Some("1".into()),
            ..Default::default()
        },
        RecurringInput {
            min_amount: Some("10.00".into()),
            ..Default::default()
        },
        RecurringInput {
            max_amount: Some("10.00".into()),
            ..Default::default()
        },
        RecurringInput {
            period_days: Some("30".into()),
            ..Default::default()
        },
        RecurringInput {
            max_date: Some("31.12.2030".into()),
            ..Default::default()
        },
    ];
    for recurring in variants {
        let req = PayNewCardRequest {
            order: h.order(A, &h.next_order(), "10.00", "c1"),
            card: Harness::card(VISA_OK, Some(CVC)),
            save: None,
            recurring: recurring.clone(),
        };
        assert_eq!(
            fault_of(h.engine.pay_new_card(req).await),
            Fault::RecurringWithCustomerNumber,
            "{recurring:?}"
        );
    }
    assert_eq!(h.counts(), before);
    assert_eq!(h.acquirer.calls(), 0);
}

// ---- R4 --------------------------------------------------------------------------------------

async fn r4_offer_is_read_only(h: Harness) {
    let before = h.counts();
    let offer = h.offer(A, "c1").await.unwrap();
    assert_eq!(offer.status, CustomerStatus::New);
    assert!(offer.save_offer && offer.need_cvc && offer.saved_card_payments);
    assert!(offer.cards.is_empty());
    assert_eq!(
        h.counts(),
        before,
        "an offer for a new customer creates nothing"
    );

    h.save_card(A, "c1", VISA_OK).await;
    let before = h.counts();
    for _ in 0..3 {
        assert_eq!(h.offer(A, "c1").await.unwrap().cards.len(), 1);
    }
    assert_eq!(h.counts(), before, "offers for a member change nothing");
}

async fn r4_absent_save_answer_means_yes(h: Harness) {
    let paid = h.pay_new(A, "c1", "10.00", VISA_OK, None).await.unwrap();
    assert!(paid.is_approved() && paid.card_saved, "{paid:?}");
    let token = paid.token.expect("token");
    let offer = h.offer(A, "c1").await.unwrap();
    assert_eq!(offer.status, CustomerStatus::Member);
    assert_eq!(tokens(&offer), vec![token]);
}

async fn r4_declined_save_offer_saves_nothing_and_the_offer_comes_again(h: Harness) {
    let paid = h
        .pay_new(A, "c1", "10.00", VISA_OK, Some(false))
        .await
        .unwrap();
    assert!(paid.is_approved(), "{paid:?}");
    assert!(!paid.card_saved && paid.token.is_none(), "{paid:?}");
    assert_eq!(h.count_rows("cards"), 0);
    let offer = h.offer(A, "c1").await.unwrap();
    assert_eq!(offer.status, CustomerStatus::New);
    assert!(offer.save_offer && offer.cards.is_empty());
    // Next time the customer agrees.
    let paid = h
        .pay_new(A, "c1", "10.00", VISA_OK, Some(true))
        .await
        .unwrap();
    assert!(paid.card_saved);
    assert_eq!(h.count_rows("cards"), 1);
}

// ---- R5 --------------------------------------------------------------------------------------

async fn r5_a_declined_payment_saves_nothing_and_the_offer_comes_again(h: Harness) {
    let paid = h
        .pay_new(A, "c1", "10.00", VISA_DECLINED, None)
        .await
        .unwrap();
    assert_eq!(paid.order_state, OrderState::Declined);
    assert_eq!(paid.response_code, ResponseCode::AS102);
    assert!(!paid.card_saved && paid.token.is_none());
    assert_eq!(h.count_rows("cards"), 0);
    let offer = h.offer(A, "c1").await.unwrap();
    assert_eq!(offer.status, CustomerStatus::New);
    assert!(offer.save_offer);
}

async fn r5_a_timed_out_payment_saves_nothing(h: Harness) {
    let paid = h.pay_new(A, "c1", "10.13", VISA_OK, None).await.unwrap();
    assert_eq!(paid.order_state, OrderState::Timeout);
    assert!(!paid.card_saved && paid.token.is_none());
    let paid = h
        .pay_new(A, "c1", "10.00", VISA_TIMEOUT, None)
        .await
        .unwrap();
    assert_eq!(paid.order_state, OrderState::Timeout);
    assert_eq!(h.count_rows("cards"), 0);
    let offer = h.offer(A, "c1").await.unwrap();
    assert_eq!(offer.status, CustomerStatus::New);
    assert!(offer.save_offer);
}

async fn r5_an_approved_registration_saves_the_card_and_counts_as_one_successful_payment(
    h: Harness,
) {
    let registered = h.register(A, "c1", VISA_OK).await.unwrap();
    assert!(
        registered.is_approved() && registered.card_saved,
        "{registered:?}"
    );
    let token = registered.token.clone().unwrap();
    let page = h.customer_page(A, "c1").await;
    assert_eq!(page.customers[0].cards[0].success_count, 1);
    assert_eq!(
        tokens(&h.offer(A, "c1").await.unwrap()),
        vec![token.clone()]
    );
    // With a threshold of 2 the single success is not enough.
    h.update_merchant(A, |m| m.list_threshold = 2);
    assert!(h.offer(A, "c1").await.unwrap().cards.is_empty());
    // A declined registration saves nothing.
    let declined = h.register(A, "c2", VISA_DECLINED).await.unwrap();
    assert_eq!(declined.order_state, OrderState::Declined);
    assert!(!declined.card_saved);
    assert_eq!(h.count_rows("cards"), 1);
}

async fn r5_a_failed_save_never_turns_an_approved_payment_into_a_failure(h: Harness) {
    // Every card insert fails from now on.
    match h.backend {
        Backend::Sqlite => {
            h.exec("CREATE TRIGGER refuse_cards BEFORE INSERT ON cards BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");
        }
        Backend::Postgres => {
            h.exec(
                "CREATE FUNCTION refuse_cards() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
            );
            h.exec("CREATE TRIGGER refuse_cards BEFORE INSERT ON cards FOR EACH ROW EXECUTE FUNCTION refuse_cards()");
        }
    }
    let paid = h.pay_new(A, "c1", "10.00", VISA_OK, None).await.unwrap();
    assert!(paid.is_approved(), "{paid:?}");
    assert!(!paid.card_saved && paid.token.is_none(), "{paid:?}");
    assert_eq!(h.count_rows("cards"), 0);
    let stored = h.text(&format!(
        "SELECT state AS v FROM orders WHERE order_number = '{}'",
        paid.order_number
    ));
    assert_eq!(stored.as_deref(), Some("Approved"));
    let offer = h.offer(A, "c1").await.unwrap();
    assert_eq!(offer.status, CustomerStatus::New);
    assert!(offer.save_offer);
}

// ---- R6 --------------------------------------------------------------------------------------

async fn r6_status_is_new_then_member_then_not_active_when_no_card_is_usable(h: Harness) {
    assert_eq!(h.offer(A, "c1").await.unwrap().status, CustomerStatus::New);
    let token = h.save_card(A, "c1", VISA_OK).await;
    assert_eq!(
        h.offer(A, "c1").await.unwrap().status,
        CustomerStatus::Member
    );

    // The only card expires.
    h.exec("UPDATE cards SET expiry_year = 2021");
    h.after_sql_change().await;
    let offer = h.offer(A, "c1").await.unwrap();
    assert_eq!(offer.status, CustomerStatus::NotActive);
    assert!(offer.cards.is_empty());
    assert_eq!(
        fault_of(h.pay_saved(A, "c1", "10.00", &token, Some(CVC)).await),
        Fault::CardExpired
    );

    // Unexpired but blocked: still not active.
    h.exec("UPDATE cards SET expiry_year = 2030, state = 'blocked'");
    h.after_sql_change().await;
    assert_eq!(
        h.offer(A, "c1").await.unwrap().status,
        CustomerStatus::NotActive
    );
    assert!(!h.token_list(A, "c1").await.unwrap()[0].active);

    h.exec("UPDATE cards SET state = 'active'");
    h.after_sql_change().await;
    assert_eq!(
        h.offer(A, "c1").await.unwrap().status,
        CustomerStatus::Member
    );
}

async fn r6_deny_stops_save_offers_but_payments_work(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    let changed = h.set_status(A, "c1", "deny", None).await.unwrap();
    assert_eq!(changed.status, CustomerStatus::Deny);
    let offer = h.offer(A, "c1").await.unwrap();
    assert_eq!(offer.status, CustomerStatus::Deny);
    assert!(!offer.save_offer);
    assert_eq!(tokens(&offer), vec![token.clone()]);
    assert!(h
        .pay_saved(A, "c1", "10.00", &token, Some(CVC))
        .await
        .unwrap()
        .is_approved());
    let paid = h
        .pay_new(A, "c1", "10.00", MASTERCARD_OK, None)
        .await
        .unwrap();
    assert!(paid.is_approved() && !paid.card_saved, "{paid:?}");
    assert_eq!(h.count_rows("cards"), 1);
    // The flag stays until cleared.
    assert!(!h.offer(A, "c1").await.unwrap().save_offer);
    assert_eq!(
        h.set_status(A, "c1", "clear_deny", None)
            .await
            .unwrap()
            .status,
        CustomerStatus::Member
    );
    assert!(h.offer(A, "c1").await.unwrap().save_offer);
}

async fn r6_fraud_refuses_payments_until_cleared(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    assert_eq!(
        h.set_status(A, "c1", "fraud", None).await.unwrap().status,
        CustomerStatus::Fraud
    );
    let (before, calls) = (h.counts(), h.acquirer.calls());
    assert_eq!(
        fault_of(h.pay_saved(A, "c1", "10.00", &token, Some(CVC)).await),
        Fault::CustomerFraud
    );
    assert_eq!(
        fault_of(h.token_pay(A, "c1", "10.00", &token).await),
        Fault::CustomerFraud
    );
    assert_eq!(
        fault_of(h.pay_new(A, "c1", "10.00", MASTERCARD_OK, None).await),
        Fault::CustomerFraud
    );
    assert_eq!(
        fault_of(h.register(A, "c1", MASTERCARD_OK).await),
        Fault::CustomerFraud
    );
    assert_eq!((h.counts(), h.acquirer.calls()), (before, calls));
    let offer = h.offer(A, "c1").await.unwrap();
    assert_eq!(offer.status, CustomerStatus::Fraud);
    assert!(!offer.save_offer && !offer.saved_card_payments && offer.cards.is_empty());

    assert_eq!(
        h.set_status(A, "c1", "clear_fraud", None)
            .await
            .unwrap()
            .status,
        CustomerStatus::Member
    );
    assert!(h
        .pay_saved(A, "c1", "10.00", &token, Some(CVC))
        .await
        .unwrap()
        .is_approved());

    // A customer the merchant marks before any payment is refused too; `active` clears it.
    h.set_status(A, "c2", "fraud", None).await.unwrap();
    assert_eq!(
        fault_of(h.pay_new(A, "c2", "10.00", VISA_OK, None).await),
        Fault::CustomerFraud
    );
    assert_eq!(
        h.set_status(A, "c2", "active", None).await.unwrap().status,
        CustomerStatus::New
    );
    assert!(h
        .pay_new(A, "c2", "10.00", VISA_OK, None)
        .await
        .unwrap()
        .is_approved());
}

async fn r6_a_customer_who_leaves_is_denied_and_every_card_is_deleted(h: Harness) {
    let t1 = h.save_card(A, "c1", VISA_OK).await;
    h.save_card(A, "c1", MASTERCARD_OK).await;
    let changed = h.set_status(A, "c1", "leave", None).await.unwrap();
    assert_eq!(changed.status, CustomerStatus::Deny);
    assert!(changed.cards_deleted);
    assert!(h.token_list(A, "c1").await.unwrap().is_empty());
    assert_eq!(h.number("SELECT COUNT(*) AS n FROM cards WHERE state <> 'deleted' OR pan_ciphertext IS NOT NULL"), 0);
    let offer = h.offer(A, "c1").await.unwrap();
    assert_eq!(offer.status, CustomerStatus::Deny);
    assert!(!offer.save_offer && offer.cards.is_empty());
    assert_eq!(
        fault_of(h.pay_saved(A, "c1", "10.00", &t1, Some(CVC)).await),
        Fault::TokenNotFound
    );
}

// ---- R7 --------------------------------------------------------------------------------------

async fn r7_offer_lists_several_cards_last_used_first(h: Harness) {
    let visa = h.save_card(A, "c1", VISA_OK).await;
    let mastercard = h.save_card(A, "c1", MASTERCARD_OK).await;
    let mir = h.save_card(A, "c1", MIR_OK).await;
    assert_eq!(
        tokens(&h.offer(A, "c1").await.unwrap()),
        vec![mir.clone(), mastercard.clone(), visa.clone()]
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(h
        .pay_saved(A, "c1", "10.00", &visa, Some(CVC))
        .await
        .unwrap()
        .is_approved());
    assert_eq!(
        tokens(&h.offer(A, "c1").await.unwrap()),
        vec![visa, mir, mastercard]
    );
}

async fn r7_a_card_below_the_merchants_threshold_is_not_offered(h: Harness) {
    // Successful payments count across the union: saved at B, offered at A.
    h.join_a_and_b();
    h.update_merchant(A, |m| m.list_threshold = 2);
    let token = h.save_card(B, "c1", VISA_OK).await;
    let offer = h.offer(A, "c1").await.unwrap();
    assert_eq!(offer.status, CustomerStatus::Member);
    assert!(
        offer.cards.is_empty(),
        "one success is below A's threshold of 2"
    );
    assert_eq!(
        tokens(&h.offer(B, "c1").await.unwrap()),
        vec![token.clone()]
    );
    assert!(h
        .token_pay(B, "c1", "10.00", &token)
        .await
        .unwrap()
        .is_approved());
    assert_eq!(tokens(&h.offer(A, "c1").await.unwrap()), vec![token]);
}

async fn r7_token_list_returns_every_card_not_deleted_and_marks_expired_ones_inactive(h: Harness) {
    let visa = h.save_card(A, "c1", VISA_OK).await;
    let mastercard = h.save_card(A, "c1", MASTERCARD_OK).await;
    let mir = h.save_card(A, "c1", MIR_OK).await;
    h.delete(A, "c1", &mir, None).await.unwrap();
    h.exec(&format!(
        "UPDATE cards SET expiry_year = 2022, expiry_month = 3 WHERE token = '{mastercard}'"
    ));
    h.after_sql_change().await;
    let mut list = h.token_list(A, "c1").await.unwrap();
    list.sort_by(|a, b| a.token.cmp(&b.token));
    let mut expected = vec![
        TokenListEntry {
            token: visa,
            post: "1111".into(),
            bin: 411111,
            brand: "VISA".into(),
            bank: String::new(),
            expire: "12.2030".into(),
            active: true,
            need_cvc: true,
        },
        TokenListEntry {
            token: mastercard,
            post: "4444".into(),
            bin: 555555,
            brand: "MasterCard".into(),
            bank: String::new(),
            expire: "03.2022".into(),
            active: false,
            need_cvc: true,
        },
    ];
    expected.sort_by(|a, b| a.token.cmp(&b.token));
    assert_eq!(list, expected);
    // The payment page offers only the usable one.
    assert_eq!(h.offer(A, "c1").await.unwrap().cards.len(), 1);
}

// ---- R8 --------------------------------------------------------------------------------------

async fn r8_a_saved_card_payment_needs_the_cvc_when_the_merchant_asks_for_it(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    let (before, calls) = (h.counts(), h.acquirer.calls());
    assert_eq!(
        fault_of(h.pay_saved(A, "c1", "10.00", &token, None).await),
        Fault::CvcRequired
    );
    assert_eq!((h.counts(), h.acquirer.calls()), (before, calls));
    let paid = h
        .pay_saved(A, "c1", "10.00", &token, Some(CVC))
        .await
        .unwrap();
    assert!(paid.is_approved());
    assert_eq!(paid.kind, "saved_card");
    let seen = h.acquirer.last();
    assert!(
        seen.had_cvc,
        "the CVC goes to the acquirer for this one authorization"
    );
    assert_eq!(seen.kind, AuthKind::CardOnFile);
}

async fn r8_a_saved_card_payment_needs_no_cvc_when_the_merchant_does_not_ask(h: Harness) {
    h.update_merchant(A, |m| m.need_cvc = false);
    let token = h.save_card(A, "c1", VISA_OK).await;
    assert!(!h.offer(A, "c1").await.unwrap().need_cvc);
    let paid = h.pay_saved(A, "c1", "10.00", &token, None).await.unwrap();
    assert!(paid.is_approved());
    assert!(!h.acquirer.last().had_cvc);
}

/// The default decided from the reference (docs/rules.md, R8): a merchant created without
/// naming `need_cvc` asks for the CVC2 on the payment page; Token Pay (CIT COF) never does.
async fn r8_a_merchant_created_without_need_cvc_asks_for_it_on_the_payment_page_only(h: Harness) {
    use base64::Engine as _;
    use oneclick_actors::vault::audit::AuditActor;
    use oneclick_actors::vault::merchants::{
        save_merchant, MerchantChanges, SaveMerchant, SaveOutcome,
    };
    const FRESH: i64 = 452_741;
    let created = {
        let mut conn = h.pool.get().unwrap();
        save_merchant(
            &mut conn,
            &h.keyring,
            SaveMerchant {
                id: FRESH,
                changes: MerchantChanges {
                    name: Some("Fresh shop".into()),
                    ..MerchantChanges::default()
                },
                signature_key: Some(
                    base64::engine::general_purpose::STANDARD.encode(signature_key(FRESH)),
                ),
                actor: AuditActor::admin_cli("test"),
            },
        )
        .unwrap()
    };
    assert!(matches!(created, SaveOutcome::Created(_)), "{created:?}");
    assert!(h.offer(FRESH, "c1").await.unwrap().need_cvc);
    let token = h.save_card(FRESH, "c1", VISA_OK).await;
    assert_eq!(
        fault_of(h.pay_saved(FRESH, "c1", "10.00", &token, None).await),
        Fault::CvcRequired
    );
    let paid = h.token_pay(FRESH, "c1", "10.00", &token).await.unwrap();
    assert!(paid.is_approved(), "{paid:?}");
    assert!(!h.acquirer.last().had_cvc);
}

async fn r8_token_pay_and_merchant_initiated_charges_send_no_cvc(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    assert!(h
        .token_pay(A, "c1", "10.00", &token)
        .await
        .unwrap()
        .is_approved());
    assert!(!h.acquirer.last().had_cvc);
    let initial = start_agreement(&h).await;
    // A period later (the initial payment starts the period).
    h.exec("UPDATE recurring_agreements SET last_charge_on = '2020-01-01'");
    assert!(charge(&h, &initial, "20.00").await.unwrap().is_approved());
    let seen = h.acquirer.last();
    assert!(matches!(seen.kind, AuthKind::MerchantInitiated { .. }));
    assert!(!seen.had_cvc);
}

// ---- R9 --------------------------------------------------------------------------------------

async fn r9_every_reply_shows_cards_masked(h: Harness) {
    let paid = h.pay_new(A, "c1", "10.00", VISA_OK, None).await.unwrap();
    let card = paid.card.clone().unwrap();
    assert_eq!(card.number, "411111******1111");
    assert_eq!(
        (
            card.brand.as_str(),
            card.expire.as_str(),
            card.holder.as_str()
        ),
        ("VISA", "12.2030", "IVAN PETROV")
    );
    let amex = h.pay_new(A, "c1", "10.00", AMEX_OK, None).await;
    // Amex takes a 4-digit CVC: the harness's 3-digit one is refused before anything happens.
    assert_eq!(fault_of(amex), Fault::InvalidCvc);
    let order = h.order(A, &h.next_order(), "10.00", "c1");
    let amex = h
        .engine
        .pay_new_card(PayNewCardRequest {
            order,
            card: Harness::card(AMEX_OK, Some("6158")),
            save: None,
            recurring: RecurringInput::default(),
        })
        .await
        .unwrap();
    assert_eq!(amex.card.clone().unwrap().number, "378282*****0005");

    let offer = h.offer(A, "c1").await.unwrap();
    let list = h.token_list(A, "c1").await.unwrap();
    let page = h.customer_page(A, "c1").await;
    let state = h
        .engine
        .order_state(OrderStateRequest {
            merchant_id: A,
            order_number: paid.order_number.clone(),
        })
        .await
        .unwrap();
    assert_eq!(state.card.clone().unwrap().number, "411111******1111");
    let mut numbers: Vec<String> = offer.cards.iter().map(|c| c.card.number.clone()).collect();
    numbers.sort();
    assert_eq!(
        numbers,
        vec![
            "378282*****0005".to_string(),
            "411111******1111".to_string()
        ]
    );
    assert!(list
        .iter()
        .all(|e| e.post.len() == 4 && e.bin.to_string().len() == 6));
    let everything = format!("{paid:?}{amex:?}{offer:?}{list:?}{page:?}{state:?}");
    for pan in [VISA_OK, AMEX_OK] {
        assert!(
            !everything.contains(pan),
            "a reply holds the full number {pan}"
        );
    }
}

// ---- R10 -------------------------------------------------------------------------------------

async fn r10_deleting_a_card_keeps_a_masked_deleted_row_and_wipes_its_secrets(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    h.save_card(A, "c1", MASTERCARD_OK).await;
    let removed = h.delete(A, "c1", &token, None).await.unwrap();
    assert_eq!(removed.message, format!("Token {token} is removed"));
    let row = h.text(&format!(
        "SELECT state || '|' || bin || '|' || last4 || '|' || \
         CASE WHEN pan_ciphertext IS NULL THEN 'no-ciphertext' ELSE 'ciphertext' END || '|' || \
         CASE WHEN fingerprint IS NULL THEN 'no-fingerprint' ELSE 'fingerprint' END || '|' || \
         CASE WHEN key_version IS NULL THEN 'no-key' ELSE 'key' END || '|' || \
         CASE WHEN deleted_at IS NULL THEN 'live' ELSE 'deleted-at' END AS v \
         FROM cards WHERE token = '{token}'"
    ));
    assert_eq!(
        row.as_deref(),
        Some("deleted|411111|1111|no-ciphertext|no-fingerprint|no-key|deleted-at")
    );
    // The personal account still shows it, masked, as deleted.
    let page = h.customer_page(A, "c1").await;
    let shown = page.customers[0]
        .cards
        .iter()
        .find(|c| c.token == token)
        .unwrap();
    assert_eq!(
        (shown.state.as_str(), shown.number.as_str()),
        ("deleted", "411111******1111")
    );
    assert_eq!(h.token_list(A, "c1").await.unwrap().len(), 1);
    assert_eq!(
        fault_of(h.pay_saved(A, "c1", "10.00", &token, Some(CVC)).await),
        Fault::TokenNotFound
    );
    assert_eq!(
        fault_of(h.delete(A, "c1", &token, None).await),
        Fault::TokenNotFound
    );
}

async fn r10_deleting_the_last_card_makes_the_customer_new_again(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    h.delete(A, "c1", &token, None).await.unwrap();
    let offer = h.offer(A, "c1").await.unwrap();
    assert_eq!(offer.status, CustomerStatus::New);
    assert!(offer.save_offer && offer.cards.is_empty());
    assert!(h.token_list(A, "c1").await.unwrap().is_empty());
}

async fn r10_saving_a_deleted_number_again_creates_a_new_token(h: Harness) {
    let first = h.save_card(A, "c1", VISA_OK).await;
    h.delete(A, "c1", &first, None).await.unwrap();
    let second = h.save_card(A, "c1", VISA_OK).await;
    assert_ne!(first, second);
    assert_eq!(h.count_rows("cards"), 2);
    assert_eq!(tokens(&h.offer(A, "c1").await.unwrap()), vec![second]);
}

// ---- R11 -------------------------------------------------------------------------------------

async fn r11_saving_the_same_number_again_updates_expiry_and_keeps_the_token(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    let order = h.order(A, &h.next_order(), "10.00", "c1");
    let mut card = Harness::card(VISA_OK, Some(CVC));
    card.expiry_month = "11".into();
    card.expiry_year = "2031".into();
    card.holder = "Anna Petrova".into();
    let paid = h
        .engine
        .pay_new_card(PayNewCardRequest {
            order,
            card,
            save: None,
            recurring: RecurringInput::default(),
        })
        .await
        .unwrap();
    assert!(paid.card_saved);
    assert_eq!(paid.token.as_deref(), Some(token.as_str()));
    assert_eq!(h.count_rows("cards"), 1);
    let list = h.token_list(A, "c1").await.unwrap();
    assert_eq!(
        (list.len(), list[0].token.as_str(), list[0].expire.as_str()),
        (1, token.as_str(), "11.2031")
    );
    assert_eq!(
        h.customer_page(A, "c1").await.customers[0].cards[0].holder,
        "ANNA PETROVA"
    );
    assert_eq!(
        h.number("SELECT success_count AS n FROM cards"),
        2,
        "the first save and this payment each count once (R5)"
    );
    // The card keeps its own ciphertext: it still pays under its token.
    let calls = h.acquirer.calls();
    assert!(h
        .pay_saved(A, "c1", "1.00", &token, Some(CVC))
        .await
        .unwrap()
        .is_approved());
    assert_eq!(h.acquirer.calls(), calls + 1);
    assert_eq!(h.acquirer.last().last4, &VISA_OK[VISA_OK.len() - 4..]);
    // A different number is a new card.
    let other = h.save_card(A, "c1", MASTERCARD_OK).await;
    assert_ne!(other, token);
    assert_eq!(h.count_rows("cards"), 2);
    // A deleted card saved again is a new card (the deleted row keeps no fingerprint).
    h.delete(A, "c1", &token, None).await.unwrap();
    let again = h.save_card(A, "c1", VISA_OK).await;
    assert_ne!(again, token);
    assert_eq!(h.count_rows("cards"), 3);
    assert_eq!(h.token_list(A, "c1").await.unwrap().len(), 2);
}

// ---- R12 -------------------------------------------------------------------------------------

async fn r12_a_payment_over_the_day_limit_is_declined_with_as105_without_asking_the_acquirer(
    h: Harness,
) {
    assert!(h
        .pay_new(A, "c1", "600.00", VISA_OK, None)
        .await
        .unwrap()
        .is_approved());
    let calls = h.acquirer.calls();
    let over = h.pay_new(A, "c1", "400.01", VISA_OK, None).await.unwrap();
    assert_eq!(
        (over.order_state, over.response_code),
        (OrderState::Declined, ResponseCode::AS105)
    );
    assert_eq!(h.acquirer.calls(), calls, "the acquirer was not asked");
    // Up to the limit exactly is fine; a cent more is not.
    assert!(h
        .pay_new(A, "c1", "400.00", VISA_OK, None)
        .await
        .unwrap()
        .is_approved());
    let token = h.text("SELECT token AS v FROM cards").unwrap();
    let over = h
        .pay_saved(A, "c1", "0.01", &token, Some(CVC))
        .await
        .unwrap();
    assert_eq!(over.response_code, ResponseCode::AS105);
    let over = h.token_pay(A, "c1", "0.01", &token).await.unwrap();
    assert_eq!(over.response_code, ResponseCode::AS105);
    // Other customers have their own turnover.
    assert!(h
        .pay_new(A, "c2", "999.00", VISA_OK, None)
        .await
        .unwrap()
        .is_approved());
    // A customer's first payment (the customer is created by it: no turnover to sum) is
    // checked against the limit on its own.
    let first = h.pay_new(A, "c3", "1000.01", VISA_OK, None).await.unwrap();
    assert_eq!(
        (first.order_state, first.response_code),
        (OrderState::Declined, ResponseCode::AS105)
    );
    assert_eq!(h.acquirer.calls(), calls + 2, "the acquirer was not asked");
}

async fn r12_declined_amounts_are_released_and_timed_out_amounts_kept(h: Harness) {
    let declined = h
        .pay_new(A, "c1", "600.00", VISA_DECLINED, None)
        .await
        .unwrap();
    assert_eq!(declined.response_code, ResponseCode::AS102);
    assert!(
        h.pay_new(A, "c1", "600.00", VISA_OK, None)
            .await
            .unwrap()
            .is_approved(),
        "the decline was released"
    );
    let in_doubt = h.pay_new(A, "c1", "300.13", VISA_OK, None).await.unwrap();
    assert_eq!(in_doubt.order_state, OrderState::Timeout);
    let over = h.pay_new(A, "c1", "100.00", VISA_OK, None).await.unwrap();
    assert_eq!(
        over.response_code,
        ResponseCode::AS105,
        "the timed-out 300.13 still counts"
    );
    assert!(h
        .pay_new(A, "c1", "99.87", VISA_OK, None)
        .await
        .unwrap()
        .is_approved());
}

async fn r12_the_day_limit_sums_every_card_at_every_merchant_of_the_union(h: Harness) {
    h.join_a_and_b();
    let token = h.save_card(A, "c1", VISA_OK).await; // 100.00
    assert!(h
        .pay_new(A, "c1", "500.00", MASTERCARD_OK, None)
        .await
        .unwrap()
        .is_approved());
    let calls = h.acquirer.calls();
    let over = h.token_pay(B, "c1", "400.01", &token).await.unwrap();
    assert_eq!(over.response_code, ResponseCode::AS105);
    let over = h.pay_new(B, "c1", "400.01", MIR_OK, None).await.unwrap();
    assert_eq!(over.response_code, ResponseCode::AS105);
    assert_eq!(h.acquirer.calls(), calls);
    assert!(h
        .token_pay(B, "c1", "400.00", &token)
        .await
        .unwrap()
        .is_approved());
}

async fn r12_the_week_limit_of_the_paying_merchant_sums_the_iso_week_across_the_union(h: Harness) {
    h.join_a_and_b();
    h.update_merchant(B, |m| {
        m.limits = vec![("RUB".into(), Some(500_000), Some(150_000))]
    });
    assert!(h
        .pay_new(A, "c1", "900.00", VISA_OK, None)
        .await
        .unwrap()
        .is_approved());
    let over = h.pay_new(B, "c1", "600.01", VISA_OK, None).await.unwrap();
    assert_eq!(
        over.response_code,
        ResponseCode::AS105,
        "900 + 600.01 is over B's week limit of 1500"
    );
    assert!(h
        .pay_new(B, "c1", "600.00", VISA_OK, None)
        .await
        .unwrap()
        .is_approved());
    // Turnover older than this ISO week counts for neither window.
    h.exec(&format!(
        "UPDATE orders SET created_at = created_at - {} WHERE merchant_id = {A}",
        8 * 24 * 3600 * 1000_i64
    ));
    assert!(
        h.pay_new(A, "c1", "400.00", VISA_OK, None)
            .await
            .unwrap()
            .is_approved(),
        "A: day 1000 ≥ 600 + 400"
    );
    assert_eq!(
        h.pay_new(A, "c1", "0.01", VISA_OK, None)
            .await
            .unwrap()
            .response_code,
        ResponseCode::AS105
    );
}

// ---- R13 -------------------------------------------------------------------------------------

async fn r13_a_financial_payment_pays_and_a_registration_only_verifies(h: Harness) {
    let paid = h.pay_new(A, "c1", "250.00", VISA_OK, None).await.unwrap();
    assert!(paid.is_approved() && paid.card_saved);
    assert_eq!(paid.kind, "purchase");
    let seen = h.acquirer.last();
    assert_eq!((seen.kind, seen.amount_minor), (AuthKind::Purchase, 25_000));
    assert_eq!(
        fault_of(h.pay_new(A, "c1", "0.00", VISA_OK, None).await),
        Fault::InvalidAmount
    );

    let registered = h.register(A, "c2", MASTERCARD_OK).await.unwrap();
    assert!(registered.is_approved() && registered.card_saved);
    assert_eq!(registered.kind, "registration");
    let seen = h.acquirer.last();
    assert_eq!((seen.kind, seen.amount_minor), (AuthKind::Verify, 0));
    let state = h
        .engine
        .order_state(OrderStateRequest {
            merchant_id: A,
            order_number: registered.order_number.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        (state.kind.as_str(), state.order_state),
        ("registration", OrderState::Approved)
    );
    // A registration moves no money: the whole day limit is still there.
    assert!(h
        .pay_new(A, "c2", "1000.00", VISA_OK, None)
        .await
        .unwrap()
        .is_approved());
}

/// Reference 003: a registration is "card verification without a following payment": its
/// amount never counts toward the turnover limits (R12), on the one-statement reservation path
/// (no limits) and on the general one (limits set) alike.
async fn r13_a_registration_does_not_count_toward_the_turnover_limits(h: Harness) {
    h.update_merchant(A, |m| {
        m.limits = vec![("RUB".into(), Some(10_000), Some(10_000))]
    });
    let order = h.order(A, &h.next_order(), "90.00", "c1");
    let registered = h
        .engine
        .register(RegisterRequest {
            order,
            card: Harness::card(MASTERCARD_OK, Some(CVC)),
        })
        .await
        .unwrap();
    assert!(
        registered.is_approved() && registered.card_saved,
        "{registered:?}"
    );
    assert_eq!(
        h.number(
            "SELECT COUNT(*) AS n FROM orders WHERE kind = 'registration' AND counts_for_limits"
        ),
        0,
        "the registration's row counts for nothing"
    );
    let paid = h.pay_new(A, "c1", "95.00", VISA_OK, None).await.unwrap();
    assert!(
        paid.is_approved(),
        "90.00 registered + 95.00 paid is within a 100.00 day limit: {paid:?}"
    );
    // The limit itself still holds for what was paid.
    let over = h.pay_new(A, "c1", "5.01", VISA_OK, None).await.unwrap();
    assert_eq!(over.response_code, ResponseCode::AS105);
}

// ---- R14 -------------------------------------------------------------------------------------

async fn r14_token_pay_needs_token_type_5_and_no_cvc(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    let before = h.counts();
    for token_type in [0, 1, 4, 6] {
        let order = h.order(A, &h.next_order(), "10.00", "c1");
        let req = TokenPayRequest {
            order,
            token_type,
            token: token.clone(),
        };
        assert_eq!(
            fault_of(h.engine.token_pay(req).await),
            Fault::InvalidTokenType
        );
    }
    assert_eq!(h.counts(), before);
    let paid = h.token_pay(A, "c1", "10.00", &token).await.unwrap();
    assert!(paid.is_approved());
    assert_eq!(
        (paid.kind.as_str(), paid.token.as_deref()),
        ("token_pay", Some(token.as_str()))
    );
    let seen = h.acquirer.last();
    assert_eq!(seen.kind, AuthKind::CardOnFile);
    assert!(!seen.had_cvc);
    assert_eq!(
        fault_of(h.token_pay(A, "c1", "10.00", UNKNOWN_TOKEN).await),
        Fault::TokenNotFound
    );
}

// ---- R15 -------------------------------------------------------------------------------------

async fn r15_an_approved_initial_recurring_payment_creates_an_agreement(h: Harness) {
    let initial = start_agreement(&h).await;
    assert_eq!(h.acquirer.last().kind, AuthKind::RecurringInitial);
    assert_eq!(h.count_rows("recurring_agreements"), 1);
    assert_eq!(
        h.text("SELECT order_number AS v FROM recurring_agreements"),
        Some(initial)
    );
    // Not a One Click customer (R3): no customer, no saved card.
    assert_eq!((h.count_rows("customers"), h.count_rows("cards")), (0, 0));
    // A declined initial payment creates nothing.
    let declined = h
        .engine
        .pay_new_card(PayNewCardRequest {
            order: h.plain_order(A, &h.next_order(), "50.00"),
            card: Harness::card(VISA_DECLINED, Some(CVC)),
            save: None,
            recurring: recurring("10.00", "500.00", "30", "31.12.2030"),
        })
        .await
        .unwrap();
    assert_eq!(declined.order_state, OrderState::Declined);
    assert_eq!(h.count_rows("recurring_agreements"), 1);
}

async fn r15_charges_must_stay_within_the_agreed_amounts_period_and_end_date(h: Harness) {
    let initial = start_agreement(&h).await;
    let initial_tx = h.text(&format!(
        "SELECT network_tx_id AS v FROM orders WHERE order_number = '{initial}'"
    ));
    assert!(initial_tx.is_some());

    // The initial payment starts the series: a charge the same day is too soon.
    assert_eq!(
        charge(&h, &initial, "100.00").await.unwrap_err(),
        Fault::RecurringOutOfTerms
    );
    h.exec("UPDATE recurring_agreements SET last_charge_on = '2020-01-01'");
    let first = charge(&h, &initial, "100.00").await.unwrap();
    assert!(first.is_approved());
    assert_eq!(first.kind, "recurring_charge");
    assert_eq!(
        h.acquirer.last().kind,
        AuthKind::MerchantInitiated {
            network_tx_id: initial_tx.clone()
        }
    );
    // Too soon: the period has not passed.
    assert_eq!(
        charge(&h, &initial, "100.00").await.unwrap_err(),
        Fault::RecurringOutOfTerms
    );

    // A period later.
    h.exec("UPDATE recurring_agreements SET last_charge_on = '2020-01-01'");
    let calls = h.acquirer.calls();
    assert_eq!(
        charge(&h, &initial, "500.01").await.unwrap_err(),
        Fault::RecurringOutOfTerms
    );
    assert_eq!(
        charge(&h, &initial, "9.99").await.unwrap_err(),
        Fault::RecurringOutOfTerms
    );
    assert_eq!(
        h.acquirer.calls(),
        calls,
        "out-of-terms charges never reach the acquirer"
    );
    assert!(charge(&h, &initial, "500.00").await.unwrap().is_approved());

    // A declined charge does not use up the period.
    h.exec("UPDATE recurring_agreements SET last_charge_on = '2020-01-01'");
    let declined = charge(&h, &initial, "10.51").await.unwrap();
    assert_eq!(declined.order_state, OrderState::Declined);
    assert!(charge(&h, &initial, "10.00").await.unwrap().is_approved());

    // After the end date.
    h.exec(
        "UPDATE recurring_agreements SET last_charge_on = '2020-01-01', max_date = '2021-01-01'",
    );
    assert_eq!(
        charge(&h, &initial, "100.00").await.unwrap_err(),
        Fault::RecurringOutOfTerms
    );
    assert_eq!(
        charge(&h, "no-such-order", "100.00").await.unwrap_err(),
        Fault::AgreementNotFound
    );
}

async fn r15_without_mit_cof_charges_go_as_regular_recurring_payments(h: Harness) {
    h.update_merchant(A, |m| m.mit_cof = false);
    let initial = start_agreement(&h).await;
    h.exec("UPDATE recurring_agreements SET last_charge_on = '2020-01-01'");
    assert!(charge(&h, &initial, "100.00").await.unwrap().is_approved());
    assert_eq!(
        h.acquirer.last().kind,
        AuthKind::MerchantInitiated {
            network_tx_id: None
        }
    );
}

// ---- R16 -------------------------------------------------------------------------------------

async fn r16_an_order_left_in_process_by_a_dead_process_is_settled_as_timeout(h: Harness) {
    let number = h.next_order();
    let request = || PayNewCardRequest {
        order: h.order(A, &number, "10.00", "c-doubt"),
        card: Harness::card(VISA_OK, Some(CVC)),
        save: Some(false),
        recurring: RecurringInput::default(),
    };
    assert!(h
        .engine
        .pay_new_card(request())
        .await
        .unwrap()
        .is_approved());
    // As if the process died between reserving and recording the acquirer's answer.
    let reserved = format!(
        "UPDATE orders SET state = 'In Process', response_code = 'AS300', result_json = NULL WHERE order_number = '{number}'"
    );
    h.exec(&reserved);
    let calls = h.acquirer.calls();
    let young = h.engine.pay_new_card(request()).await.unwrap();
    assert_eq!(
        (young.order_state, young.response_code),
        (OrderState::InProcess, ResponseCode::AS300),
        "still possibly at the acquirer in another process"
    );
    h.exec(&format!(
        "UPDATE orders SET updated_at = updated_at - 3600000 WHERE order_number = '{number}'"
    ));
    let settled = h.engine.pay_new_card(request()).await.unwrap();
    assert_eq!(
        (settled.order_state, settled.response_code),
        (OrderState::Timeout, ResponseCode::AS998),
        "an abandoned reservation ends in doubt, not In Process for good"
    );
    assert_eq!(h.acquirer.calls(), calls, "the acquirer is not asked again");
    assert_eq!(
        h.text(&format!(
            "SELECT state AS v FROM orders WHERE order_number = '{number}'"
        )),
        Some("Timeout".to_string())
    );
    assert_eq!(
        h.engine.pay_new_card(request()).await.unwrap(),
        settled,
        "and stays settled"
    );
}

async fn r16_a_repeated_order_returns_the_first_result_and_applies_nothing(h: Harness) {
    let number = h.next_order();
    let request = |cvc: &str| PayNewCardRequest {
        order: h.order(A, &number, "10.00", "c1"),
        card: Harness::card(VISA_OK, Some(cvc)),
        save: None,
        recurring: RecurringInput::default(),
    };
    let first = h.engine.pay_new_card(request(CVC)).await.unwrap();
    assert!(first.is_approved() && first.card_saved);
    let (before, calls) = (h.counts(), h.acquirer.calls());
    assert_eq!(h.engine.pay_new_card(request(CVC)).await.unwrap(), first);
    // The CVC is not compared.
    assert_eq!(h.engine.pay_new_card(request("392")).await.unwrap(), first);
    assert_eq!((h.counts(), h.acquirer.calls()), (before, calls));
    let success = h.number("SELECT success_count AS n FROM cards");
    assert_eq!(success, 1, "the repeat did not count a second success");

    // A repeated decline stays a decline; a repeated AS105 stays AS105.
    let number = h.next_order();
    let declined = |h: &Harness| PayNewCardRequest {
        order: h.order(A, &number, "10.00", "c1"),
        card: Harness::card(VISA_DECLINED, Some(CVC)),
        save: None,
        recurring: RecurringInput::default(),
    };
    let first = h.engine.pay_new_card(declined(&h)).await.unwrap();
    assert_eq!(h.engine.pay_new_card(declined(&h)).await.unwrap(), first);
    let number = h.next_order();
    let over = |h: &Harness| PayNewCardRequest {
        order: h.order(A, &number, "2000.00", "c1"),
        card: Harness::card(VISA_OK, Some(CVC)),
        save: None,
        recurring: RecurringInput::default(),
    };
    let first = h.engine.pay_new_card(over(&h)).await.unwrap();
    assert_eq!(first.response_code, ResponseCode::AS105);
    assert_eq!(h.engine.pay_new_card(over(&h)).await.unwrap(), first);
}

async fn r16_a_repeat_with_different_content_is_an_idempotency_conflict(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    let other_token = h.save_card(A, "c1", MASTERCARD_OK).await;
    let saved = |order: OrderInput, token: &str| PaySavedCardRequest {
        order,
        token: token.into(),
        cvc: Some(SecretString::new(CVC)),
    };
    let new_card = |order: OrderInput, card: &str| PayNewCardRequest {
        order,
        card: Harness::card(card, Some(CVC)),
        save: None,
        recurring: RecurringInput::default(),
    };

    // A saved-card order, then repeats that differ in one thing each.
    let n1 = h.next_order();
    assert!(h
        .engine
        .pay_saved_card(saved(h.order(A, &n1, "10.00", "c1"), &token))
        .await
        .unwrap()
        .is_approved());
    let n2 = h.next_order();
    assert!(h
        .engine
        .pay_new_card(new_card(h.order(A, &n2, "10.00", "c1"), MIR_OK))
        .await
        .unwrap()
        .is_approved());
    let (before, calls) = (h.counts(), h.acquirer.calls());

    let amount = h
        .engine
        .pay_saved_card(saved(h.order(A, &n1, "10.01", "c1"), &token))
        .await;
    assert_eq!(fault_of(amount), Fault::IdempotencyConflict, "amount");
    let card = h
        .engine
        .pay_saved_card(saved(h.order(A, &n1, "10.00", "c1"), &other_token))
        .await;
    assert_eq!(fault_of(card), Fault::IdempotencyConflict, "token");
    let mut usd = h.order(A, &n1, "10.00", "c1");
    usd.currency = "USD".into();
    usd.signature = Some(Harness::sign(A, &n1, "10.00", "USD", "c1"));
    assert_eq!(
        fault_of(h.engine.pay_saved_card(saved(usd, &token)).await),
        Fault::IdempotencyConflict,
        "currency"
    );
    let kind = h
        .engine
        .pay_new_card(new_card(h.order(A, &n1, "10.00", "c1"), VISA_OK))
        .await;
    assert_eq!(
        fault_of(kind),
        Fault::IdempotencyConflict,
        "kind: purchase after saved_card"
    );
    let register = RegisterRequest {
        order: h.order(A, &n1, "10.00", "c1"),
        card: Harness::card(VISA_OK, Some(CVC)),
    };
    assert_eq!(
        fault_of(h.engine.register(register).await),
        Fault::IdempotencyConflict,
        "kind: registration"
    );
    let token_pay = TokenPayRequest {
        order: OrderInput {
            signature: None,
            ..h.order(A, &n1, "10.00", "c1")
        },
        token_type: 5,
        token: token.clone(),
    };
    assert_eq!(
        fault_of(h.engine.token_pay(token_pay).await),
        Fault::IdempotencyConflict,
        "kind: token_pay"
    );

    let fingerprint = h
        .engine
        .pay_new_card(new_card(h.order(A, &n2, "10.00", "c1"), MASTERCARD_OK))
        .await;
    assert_eq!(
        fault_of(fingerprint),
        Fault::IdempotencyConflict,
        "card fingerprint"
    );
    let customer = h
        .engine
        .pay_new_card(new_card(h.order(A, &n2, "10.00", "c2"), MIR_OK))
        .await;
    assert_eq!(fault_of(customer), Fault::IdempotencyConflict, "customer");

    assert_eq!(h.counts(), before, "conflicting repeats stored nothing");
    assert_eq!(
        h.acquirer.calls(),
        calls,
        "conflicting repeats never reached the acquirer"
    );
}

async fn r16_deletion_and_status_change_with_a_command_id_are_replayed(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    let other = h.save_card(A, "c1", MASTERCARD_OK).await;
    let first = h.delete(A, "c1", &token, Some("del-1")).await.unwrap();
    assert_eq!(
        h.delete(A, "c1", &token, Some("del-1")).await.unwrap(),
        first
    );
    assert_eq!(
        fault_of(h.delete(A, "c1", &other, Some("del-1")).await),
        Fault::IdempotencyConflict
    );
    assert_eq!(
        h.token_list(A, "c1").await.unwrap().len(),
        1,
        "the conflicting repeat deleted nothing"
    );
    assert_eq!(h.count_rows("processed_commands"), 1);

    let denied = h.set_status(A, "c1", "deny", Some("st-1")).await.unwrap();
    assert_eq!(denied.status, CustomerStatus::Deny);
    assert_eq!(
        h.set_status(A, "c1", "clear_deny", Some("st-2"))
            .await
            .unwrap()
            .status,
        CustomerStatus::Member
    );
    // The repeat answers as the first time and applies nothing: the customer stays cleared.
    assert_eq!(
        h.set_status(A, "c1", "deny", Some("st-1")).await.unwrap(),
        denied
    );
    assert!(h.offer(A, "c1").await.unwrap().save_offer);
    assert_eq!(
        fault_of(h.set_status(A, "c1", "fraud", Some("st-1")).await),
        Fault::IdempotencyConflict
    );
    assert_eq!(
        h.offer(A, "c1").await.unwrap().status,
        CustomerStatus::Member
    );
    assert_eq!(h.count_rows("processed_commands"), 3);
}

// ---- R17 -------------------------------------------------------------------------------------

async fn r17_another_merchant_cannot_see_or_change_a_customers_cards(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    // B has a customer of its own with the same number.
    let own = h.save_card(B, "c1", MASTERCARD_OK).await;
    let (before, calls) = (h.counts(), h.acquirer.calls());
    let listed: Vec<String> = h
        .token_list(B, "c1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.token)
        .collect();
    assert_eq!(listed, vec![own.clone()]);
    assert_eq!(
        fault_of(h.delete(B, "c1", &token, None).await),
        Fault::TokenNotFound
    );
    assert_eq!(
        fault_of(h.pay_saved(B, "c1", "10.00", &token, Some(CVC)).await),
        Fault::TokenNotFound
    );
    assert_eq!(
        fault_of(h.token_pay(B, "c1", "10.00", &token).await),
        Fault::TokenNotFound
    );
    assert_eq!(
        fault_of(h.delete(B, "c-unknown", &token, None).await),
        Fault::TokenNotFound
    );
    // The same fault as a token that does not exist.
    assert_eq!(
        fault_of(h.delete(A, "c1", UNKNOWN_TOKEN, None).await),
        Fault::TokenNotFound
    );
    assert_eq!((h.counts(), h.acquirer.calls()), (before, calls));
    assert_eq!(
        h.customer_page(B, "")
            .await
            .customers
            .iter()
            .map(|c| c.cards.len())
            .sum::<usize>(),
        1
    );
    let state = h
        .engine
        .order_state(OrderStateRequest {
            merchant_id: B,
            order_number: "order-1".into(),
        })
        .await;
    assert_eq!(
        fault_of(state),
        Fault::OrderNotFound,
        "A's order-1 is not B's"
    );
    let listed: Vec<String> = h
        .token_list(A, "c1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.token)
        .collect();
    assert_eq!(listed, vec![token]);
}

async fn r17_merchants_of_one_union_share_customers_and_cards(h: Harness) {
    h.join_a_and_b();
    let token = h.save_card(A, "c1", VISA_OK).await;
    let listed: Vec<String> = h
        .token_list(B, "c1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.token)
        .collect();
    assert_eq!(listed, vec![token.clone()]);
    assert!(h
        .token_pay(B, "c1", "10.00", &token)
        .await
        .unwrap()
        .is_approved());
    assert!(h
        .pay_saved(B, "c1", "10.00", &token, Some(CVC))
        .await
        .unwrap()
        .is_approved());
    h.delete(B, "c1", &token, None).await.unwrap();
    assert!(h.token_list(A, "c1").await.unwrap().is_empty());
}

// ---- R18 -------------------------------------------------------------------------------------

async fn r18_saved_cards_only_offers_no_saving_and_saves_no_new_card(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    h.update_merchant(A, |m| m.mode = "saved_cards_only".into());
    let offer = h.offer(A, "c1").await.unwrap();
    assert!(!offer.save_offer && offer.saved_card_payments);
    assert_eq!(tokens(&offer), vec![token.clone()]);
    assert!(!h.offer(A, "c2").await.unwrap().save_offer);
    let paid = h
        .pay_new(A, "c1", "10.00", MASTERCARD_OK, Some(true))
        .await
        .unwrap();
    assert!(paid.is_approved() && !paid.card_saved, "{paid:?}");
    assert_eq!(h.count_rows("cards"), 1);
    assert!(h
        .pay_saved(A, "c1", "10.00", &token, Some(CVC))
        .await
        .unwrap()
        .is_approved());
    assert!(h
        .token_pay(A, "c1", "10.00", &token)
        .await
        .unwrap()
        .is_approved());
    assert_eq!(
        fault_of(h.register(A, "c1", MASTERCARD_OK).await),
        Fault::ModeForbids
    );
}

async fn r18_save_only_saves_cards_but_refuses_saved_card_payments(h: Harness) {
    h.update_merchant(A, |m| m.mode = "save_only".into());
    let token = h.save_card(A, "c1", VISA_OK).await;
    assert!(h.register(A, "c1", MASTERCARD_OK).await.unwrap().card_saved);
    assert_eq!(h.count_rows("cards"), 2);
    let offer = h.offer(A, "c1").await.unwrap();
    assert!(offer.save_offer && !offer.saved_card_payments && offer.cards.is_empty());
    let (before, calls) = (h.counts(), h.acquirer.calls());
    assert_eq!(
        fault_of(h.pay_saved(A, "c1", "10.00", &token, Some(CVC)).await),
        Fault::ModeForbids
    );
    assert_eq!(
        fault_of(h.token_pay(A, "c1", "10.00", &token).await),
        Fault::ModeForbids
    );
    assert_eq!((h.counts(), h.acquirer.calls()), (before, calls));
}

// ---- unions ----------------------------------------------------------------------------------

async fn joining_a_union_is_refused_when_customer_numbers_collide(h: Harness) {
    h.save_card(A, "shared-1", VISA_OK).await;
    h.save_card(A, "only-a", VISA_OK).await;
    let b_card = h.save_card(B, "shared-1", MASTERCARD_OK).await;
    h.save_card(B, "only-b", MASTERCARD_OK).await;
    let union_id = h.create_union("merchant_group");
    assert_eq!(
        h.join_union(A, union_id),
        JoinOutcome::Joined { customers_moved: 2 }
    );
    assert_eq!(
        h.join_union(B, union_id),
        JoinOutcome::Collision(vec!["shared-1".to_string()])
    );
    // Nothing moved: B still sees only its own customer.
    let listed: Vec<String> = h
        .token_list(B, "shared-1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.token)
        .collect();
    assert_eq!(listed, vec![b_card]);
    assert_eq!(
        h.number(&format!(
            "SELECT COUNT(*) AS n FROM merchants WHERE union_id = {union_id}"
        )),
        1
    );
}

// ---- supervision and idle stop ---------------------------------------------------------------

async fn a_stopped_customer_actor_is_restarted_with_its_state_intact(h: Harness) {
    supervised_failure(&h, false).await;
}

async fn a_panicking_customer_actor_is_replaced_with_its_state_intact(h: Harness) {
    supervised_failure(&h, true).await;
}

async fn an_idle_customer_actor_stops_and_comes_back_with_its_cards(h: Harness) {
    let mut settings = test_settings();
    settings.actor_idle = Duration::from_millis(200);
    let engine = h.another_engine(settings);
    let token = h.save_card(A, "c1", VISA_OK).await;
    let list = |e: &oneclick_actors::Engine| {
        let e = e.clone();
        async move {
            e.token_list(TokenListRequest {
                merchant_id: A,
                customer_number: "c1".into(),
            })
            .await
        }
    };
    assert_eq!(list(&engine).await.unwrap()[0].token, token);
    assert_eq!(engine.active_customers(), 1);
    wait_for_no_active_customers(&engine).await;
    assert_eq!(
        engine.active_customers(),
        0,
        "the idle actor left the registry"
    );
    assert_eq!(list(&engine).await.unwrap()[0].token, token);
    assert_eq!(engine.active_customers(), 1);
}

/// Polls until `engine` holds no customer actor, for at most 5 s (the caller asserts).
async fn wait_for_no_active_customers(engine: &oneclick_actors::Engine) {
    let mut waited = Duration::ZERO;
    while engine.active_customers() > 0 && waited < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
}

async fn a_dead_actor_leaves_the_registry_without_being_looked_up_again(h: Harness) {
    // A panicked actor never retires itself; the registry's sweeper drops its slot.
    let engine_sweeping_every = |idle: Duration| {
        let mut settings = test_settings();
        settings.actor_idle = idle;
        h.another_engine(settings)
    };
    let slow = engine_sweeping_every(Duration::from_secs(3600));
    let fast = engine_sweeping_every(Duration::from_millis(200));
    for e in [&slow, &fast] {
        e.inject_customer_failure(A, "c1", true).await.unwrap();
        assert_eq!(e.active_customers(), 1);
    }
    wait_for_no_active_customers(&fast).await;
    assert_eq!(
        fast.active_customers(),
        0,
        "the dead actor's slot was dropped"
    );
    // With an hour between sweeps the slot is still there: the sweeper, not a lookup, dropped it.
    assert_eq!(slow.active_customers(), 1);
}

// ---- bad input -------------------------------------------------------------------------------

async fn bad_input_gets_its_fault_and_changes_nothing(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    let foreign = h.save_card(A, "c2", MASTERCARD_OK).await;
    let (before, calls) = (h.counts(), h.acquirer.calls());

    // New-card payments: one field wrong at a time, each signed over its own values.
    type Edit = fn(&mut OrderInput, &mut NewCardInput, &mut RecurringInput);
    let cases: Vec<(&str, Edit, Fault)> = vec![
        (
            "card number with a wrong check digit",
            |_, c, _| c.number = SecretString::new("4111111111111112"),
            Fault::InvalidCardNumber,
        ),
        (
            "card number too short",
            |_, c, _| c.number = SecretString::new("41111111111"),
            Fault::InvalidCardNumber,
        ),
        (
            "card number too long",
            |_, c, _| c.number = SecretString::new("41111111111111111113"),
            Fault::InvalidCardNumber,
        ),
        (
            "card number with letters",
            |_, c, _| c.number = SecretString::new("4111abcd11111111"),
            Fault::InvalidCardNumber,
        ),
        (
            "card number empty",
            |_, c, _| c.number = SecretString::new(""),
            Fault::InvalidCardNumber,
        ),
        (
            "expiry in the past",
            |_, c, _| {
                c.expiry_month = "01".into();
                c.expiry_year = "2020".into();
            },
            Fault::InvalidExpiry,
        ),
        (
            "expiry month 13",
            |_, c, _| c.expiry_month = "13".into(),
            Fault::InvalidExpiry,
        ),
        (
            "expiry month 0",
            |_, c, _| c.expiry_month = "0".into(),
            Fault::InvalidExpiry,
        ),
        (
            "expiry year garbage",
            |_, c, _| c.expiry_year = "20x0".into(),
            Fault::InvalidExpiry,
        ),
        (
            "expiry year empty",
            |_, c, _| c.expiry_year = String::new(),
            Fault::InvalidExpiry,
        ),
        (
            "holder empty",
            |_, c, _| c.holder = String::new(),
            Fault::InvalidCardholder,
        ),
        (
            "holder in Cyrillic",
            |_, c, _| c.holder = "Иван Петров".into(),
            Fault::InvalidCardholder,
        ),
        (
            "holder of digits",
            |_, c, _| c.holder = "12345".into(),
            Fault::InvalidCardholder,
        ),
        (
            "holder too long",
            |_, c, _| c.holder = "A".repeat(65),
            Fault::InvalidCardholder,
        ),
        (
            "CVC of two digits",
            |_, c, _| c.cvc = Some(SecretString::new("12")),
            Fault::InvalidCvc,
        ),
        (
            "CVC with a letter",
            |_, c, _| c.cvc = Some(SecretString::new("12a")),
            Fault::InvalidCvc,
        ),
        (
            "CVC of four digits on a Visa",
            |_, c, _| c.cvc = Some(SecretString::new("1234")),
            Fault::InvalidCvc,
        ),
        ("CVC missing", |_, c, _| c.cvc = None, Fault::MissingField),
        (
            "amount with three decimals",
            |o, _, _| o.amount = "10.345".into(),
            Fault::InvalidAmount,
        ),
        (
            "negative amount",
            |o, _, _| o.amount = "-10.00".into(),
            Fault::InvalidAmount,
        ),
        (
            "amount in letters",
            |o, _, _| o.amount = "ten".into(),
            Fault::InvalidAmount,
        ),
        (
            "amount empty",
            |o, _, _| o.amount = String::new(),
            Fault::InvalidAmount,
        ),
        (
            "amount with 14 integer digits",
            |o, _, _| o.amount = "12345678901234.00".into(),
            Fault::InvalidAmount,
        ),
        (
            "amount zero on a purchase",
            |o, _, _| o.amount = "0.00".into(),
            Fault::InvalidAmount,
        ),
        (
            "unknown currency",
            |o, _, _| o.currency = "XYZ".into(),
            Fault::InvalidCurrency,
        ),
        (
            "currency of two letters",
            |o, _, _| o.currency = "RU".into(),
            Fault::InvalidCurrency,
        ),
        (
            "order number of 129 characters",
            |o, _, _| o.order_number = "o".repeat(129),
            Fault::FieldTooLong,
        ),
        (
            "order number empty",
            |o, _, _| o.order_number = String::new(),
            Fault::InvalidOrderNumber,
        ),
        (
            "customer number of 33 characters",
            |o, _, _| o.customer_number = Some("c".repeat(33)),
            Fault::FieldTooLong,
        ),
        (
            "unknown merchant",
            |o, _, _| o.merchant_id = 999_999,
            Fault::UnknownMerchant,
        ),
        (
            "wrong signature",
            |o, _, _| o.signature = Some(Harness::sign(B, "x", "1", "RUB", "c1")),
            Fault::InvalidSignature,
        ),
        (
            "recurring indicator 2 without a customer",
            |o, _, r| {
                o.customer_number = None;
                r.indicator = Some("2".into());
            },
            Fault::InvalidRecurringParameters,
        ),
        (
            "recurring end date garbage",
            |o, _, r| {
                o.customer_number = None;
                *r = recurring("10", "20", "30", "2030-12-31");
            },
            Fault::InvalidRecurringParameters,
        ),
        (
            "recurring minimum above maximum",
            |o, _, r| {
                o.customer_number = None;
                *r = recurring("30", "20", "30", "31.12.2030");
            },
            Fault::InvalidRecurringParameters,
        ),
    ];
    for (what, edit, fault) in cases {
        let mut order = h.order(A, &h.next_order(), "10.00", "c1");
        let mut card = Harness::card(VISA_OK, Some(CVC));
        let mut recurring = RecurringInput::default();
        edit(&mut order, &mut card, &mut recurring);
        if what != "wrong signature" {
            if let Some(customer) = &order.customer_number {
                order.signature = Some(Harness::sign(
                    order.merchant_id,
                    &order.order_number,
                    &order.amount,
                    &order.currency,
                    customer,
                ));
            }
        }
        let result = h
            .engine
            .pay_new_card(PayNewCardRequest {
                order,
                card,
                save: None,
                recurring,
            })
            .await;
        assert_eq!(fault_of(result), fault, "{what}");
    }

    // Saved cards, tokens and customers.
    assert_eq!(
        fault_of(
            h.pay_saved(A, "c1", "10.00", UNKNOWN_TOKEN, Some(CVC))
                .await
        ),
        Fault::TokenNotFound,
        "unknown token"
    );
    assert_eq!(
        fault_of(
            h.pay_saved(A, "c1", "10.00", "not-a-token", Some(CVC))
                .await
        ),
        Fault::InvalidToken,
        "malformed token: 3/9 on every surface (docs/protocol.md)"
    );
    assert_eq!(
        fault_of(h.token_pay(A, "c1", "10.00", "not-a-token").await),
        Fault::InvalidToken,
        "Token Pay, malformed token"
    );
    assert_eq!(
        fault_of(h.delete(A, "c1", "not-a-token", None).await),
        Fault::InvalidToken,
        "removal of a malformed token"
    );
    assert_eq!(
        fault_of(h.pay_saved(A, "c1", "10.00", &foreign, Some(CVC)).await),
        Fault::TokenNotFound,
        "another customer's token"
    );
    assert_eq!(
        fault_of(h.pay_saved(A, "nobody", "10.00", &token, Some(CVC)).await),
        Fault::TokenNotFound,
        "unknown customer"
    );
    assert_eq!(
        fault_of(h.pay_saved(A, "c1", "10.00", &token, Some("84")).await),
        Fault::InvalidCvc,
        "short CVC"
    );
    assert_eq!(
        fault_of(h.pay_saved(A, "c1", "10.345", &token, Some(CVC)).await),
        Fault::InvalidAmount,
        "saved card, bad amount"
    );
    assert_eq!(
        fault_of(h.token_pay(A, "c1", "10.00", &foreign).await),
        Fault::TokenNotFound,
        "Token Pay, foreign token"
    );
    assert_eq!(
        fault_of(h.delete(A, "c1", &foreign, None).await),
        Fault::TokenNotFound,
        "delete a foreign token"
    );
    assert_eq!(
        fault_of(h.delete(A, "c1", UNKNOWN_TOKEN, None).await),
        Fault::TokenNotFound,
        "delete an unknown token"
    );
    assert_eq!(
        fault_of(h.delete(A, "nobody", &token, None).await),
        Fault::TokenNotFound,
        "delete for an unknown customer"
    );
    assert_eq!(
        fault_of(h.delete(999_999, "c1", &token, None).await),
        Fault::UnknownMerchant,
        "delete at an unknown merchant"
    );
    assert_eq!(
        fault_of(h.delete(A, "c1", &token, Some(&"x".repeat(65))).await),
        Fault::InvalidCommandId,
        "command id too long"
    );
    assert_eq!(
        fault_of(h.delete(A, "c1", &token, Some("")).await),
        Fault::InvalidCommandId,
        "command id empty"
    );
    assert_eq!(
        fault_of(h.set_status(A, "c1", "vip", None).await),
        Fault::InvalidStatus,
        "unknown status"
    );
    assert_eq!(
        fault_of(h.set_status(A, &"c".repeat(33), "deny", None).await),
        Fault::FieldTooLong,
        "status, long customer"
    );
    assert_eq!(
        fault_of(h.token_list(999_999, "c1").await),
        Fault::UnknownMerchant,
        "token list, unknown merchant"
    );
    assert_eq!(
        fault_of(h.offer(999_999, "c1").await),
        Fault::UnknownMerchant,
        "offer, unknown merchant"
    );
    let register = RegisterRequest {
        order: h.order(A, &h.next_order(), "-1", "c1"),
        card: Harness::card(VISA_OK, Some(CVC)),
    };
    assert_eq!(
        fault_of(h.engine.register(register).await),
        Fault::InvalidAmount,
        "registration, negative amount"
    );
    let charge_result = charge(&h, &"o".repeat(129), "10.00").await;
    assert_eq!(
        charge_result.unwrap_err(),
        Fault::FieldTooLong,
        "recurring charge, long initial order number"
    );

    assert_eq!(h.counts(), before, "bad input stored nothing");
    assert_eq!(
        h.acquirer.calls(),
        calls,
        "bad input never reached the acquirer"
    );
    // And the customer is as before.
    assert_eq!(h.token_list(A, "c1").await.unwrap().len(), 1);
}

/// Without turnover limits, a saved-card payment's reservation is a single statement on
/// PostgreSQL (lock, card and order together): the same outcomes as the general path.
async fn a_saved_card_payment_of_a_merchant_without_limits_keeps_every_rule(h: Harness) {
    h.update_merchant(A, |m| m.limits.clear());
    let token = h.save_card(A, "c1", VISA_OK).await;
    let number = h.next_order();
    let saved = |amount: &str, token: &str| PaySavedCardRequest {
        order: h.order(A, &number, amount, "c1"),
        token: token.into(),
        cvc: Some(SecretString::new(CVC)),
    };
    let first = h
        .engine
        .pay_saved_card(saved("10.00", &token))
        .await
        .unwrap();
    assert!(first.is_approved(), "{first:?}");
    assert_eq!(h.acquirer.last().last4, &VISA_OK[VISA_OK.len() - 4..]);
    let counted = "SELECT success_count AS n FROM cards";
    assert_eq!(h.number(counted), 2, "the save and this payment");
    let (before, calls) = (h.counts(), h.acquirer.calls());
    assert_eq!(
        h.engine
            .pay_saved_card(saved("10.00", &token))
            .await
            .unwrap(),
        first,
        "a repeat gets the stored reply"
    );
    assert_eq!(
        fault_of(h.engine.pay_saved_card(saved("10.01", &token)).await),
        Fault::IdempotencyConflict
    );
    let unknown = "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f";
    assert_eq!(
        fault_of(h.pay_saved(A, "c1", "10.00", unknown, Some(CVC)).await),
        Fault::TokenNotFound
    );
    h.set_status(A, "c1", "fraud", None).await.unwrap();
    let before_fraud = h.counts();
    assert_eq!(
        fault_of(h.pay_saved(A, "c1", "10.00", &token, Some(CVC)).await),
        Fault::CustomerFraud
    );
    assert_eq!(
        h.counts(),
        before_fraud,
        "nothing stored for the refused customer"
    );
    assert_eq!(
        h.acquirer.calls(),
        calls,
        "nothing charged after the first payment"
    );
    assert_eq!(h.number(counted), 2);
    assert_eq!(before_fraud["orders"], before["orders"]);
}

/// Without turnover limits, a new card's payment or registration for a customer reserves in one
/// statement on PostgreSQL (the customer created or locked, and the order, together): the same
/// outcomes as the general path, for a new customer and a known one.
async fn a_new_card_payment_of_a_merchant_without_limits_keeps_every_rule(h: Harness) {
    h.update_merchant(A, |m| m.limits.clear());
    let number = h.next_order();
    let new_card = |customer: &str, amount: &str| PayNewCardRequest {
        order: h.order(A, &number, amount, customer),
        card: Harness::card(VISA_OK, Some(CVC)),
        save: None,
        recurring: RecurringInput::default(),
    };
    let customers = h.count_rows("customers");
    let first = h
        .engine
        .pay_new_card(new_card("n1", "10.00"))
        .await
        .unwrap();
    assert!(first.is_approved() && first.card_saved, "{first:?}");
    assert_eq!(h.count_rows("customers"), customers + 1, "a new customer");
    let (before, calls) = (h.counts(), h.acquirer.calls());
    assert_eq!(
        h.engine
            .pay_new_card(new_card("n1", "10.00"))
            .await
            .unwrap(),
        first,
        "a repeat gets the stored reply"
    );
    assert_eq!(
        fault_of(h.engine.pay_new_card(new_card("n1", "10.01")).await),
        Fault::IdempotencyConflict
    );
    assert_eq!(
        fault_of(h.engine.pay_new_card(new_card("n2", "10.00")).await),
        Fault::IdempotencyConflict,
        "the order number names another customer"
    );
    assert_eq!(
        h.counts(),
        before,
        "repeats store nothing, n2 is not created"
    );
    assert_eq!(h.acquirer.calls(), calls, "repeats charge nothing");
    // A known customer: a second card registered, no second customer.
    let second = h.register(A, "n1", MASTERCARD_OK).await.unwrap();
    assert!(second.is_approved() && second.card_saved, "{second:?}");
    assert_eq!(h.token_list(A, "n1").await.unwrap().len(), 2);
    assert_eq!(h.count_rows("customers"), before["customers"]);
    // Flagged by another process (this engine's cached customer does not know): refused under
    // the lock, nothing stored or charged.
    assert_eq!(
        h.exec("UPDATE customers SET fraud = true WHERE customer_number = 'n1'"),
        1
    );
    let (before_fraud, calls) = (h.counts(), h.acquirer.calls());
    assert_eq!(
        fault_of(h.pay_new(A, "n1", "10.00", MIR_OK, None).await),
        Fault::CustomerFraud
    );
    assert_eq!(
        fault_of(h.register(A, "n1", MIR_OK).await),
        Fault::CustomerFraud
    );
    assert_eq!(
        h.counts(),
        before_fraud,
        "nothing stored for the refused customer"
    );
    assert_eq!(h.acquirer.calls(), calls, "nothing charged");
}

both_backends!(
    r1_customer_number_longer_than_32_characters_as_received_is_a_fault,
    r1_prohibited_characters_are_stripped_from_the_customer_number,
    r1_customer_number_empty_after_stripping_is_a_fault,
    r1_a_merchant_not_enabled_for_one_click_cannot_send_a_customer_number,
    r2_missing_signature_is_a_fault_and_nothing_is_stored,
    r2_wrong_signature_is_a_fault_and_nothing_is_stored,
    r2_signature_is_computed_over_the_customer_number_as_received,
    r3_customer_number_with_any_recurring_field_is_a_fault,
    r4_offer_is_read_only,
    r4_absent_save_answer_means_yes,
    r4_declined_save_offer_saves_nothing_and_the_offer_comes_again,
    r5_a_declined_payment_saves_nothing_and_the_offer_comes_again,
    r5_a_timed_out_payment_saves_nothing,
    r5_an_approved_registration_saves_the_card_and_counts_as_one_successful_payment,
    r5_a_failed_save_never_turns_an_approved_payment_into_a_failure,
    r6_status_is_new_then_member_then_not_active_when_no_card_is_usable,
    r6_deny_stops_save_offers_but_payments_work,
    r6_fraud_refuses_payments_until_cleared,
    r6_a_customer_who_leaves_is_denied_and_every_card_is_deleted,
    r7_offer_lists_several_cards_last_used_first,
    r7_a_card_below_the_merchants_threshold_is_not_offered,
    r7_token_list_returns_every_card_not_deleted_and_marks_expired_ones_inactive,
    r8_a_saved_card_payment_needs_the_cvc_when_the_merchant_asks_for_it,
    r8_a_saved_card_payment_needs_no_cvc_when_the_merchant_does_not_ask,
    r8_token_pay_and_merchant_initiated_charges_send_no_cvc,
    r8_a_merchant_created_without_need_cvc_asks_for_it_on_the_payment_page_only,
    r9_every_reply_shows_cards_masked,
    r10_deleting_a_card_keeps_a_masked_deleted_row_and_wipes_its_secrets,
    r10_deleting_the_last_card_makes_the_customer_new_again,
    r10_saving_a_deleted_number_again_creates_a_new_token,
    r11_saving_the_same_number_again_updates_expiry_and_keeps_the_token,
    r12_a_payment_over_the_day_limit_is_declined_with_as105_without_asking_the_acquirer,
    r12_declined_amounts_are_released_and_timed_out_amounts_kept,
    r12_the_day_limit_sums_every_card_at_every_merchant_of_the_union,
    r12_the_week_limit_of_the_paying_merchant_sums_the_iso_week_across_the_union,
    r13_a_financial_payment_pays_and_a_registration_only_verifies,
    r13_a_registration_does_not_count_toward_the_turnover_limits,
    r14_token_pay_needs_token_type_5_and_no_cvc,
    r15_an_approved_initial_recurring_payment_creates_an_agreement,
    r15_charges_must_stay_within_the_agreed_amounts_period_and_end_date,
    r15_without_mit_cof_charges_go_as_regular_recurring_payments,
    r16_a_repeated_order_returns_the_first_result_and_applies_nothing,
    r16_an_order_left_in_process_by_a_dead_process_is_settled_as_timeout,
    r16_a_repeat_with_different_content_is_an_idempotency_conflict,
    r16_deletion_and_status_change_with_a_command_id_are_replayed,
    r17_another_merchant_cannot_see_or_change_a_customers_cards,
    r17_merchants_of_one_union_share_customers_and_cards,
    r18_saved_cards_only_offers_no_saving_and_saves_no_new_card,
    r18_save_only_saves_cards_but_refuses_saved_card_payments,
    joining_a_union_is_refused_when_customer_numbers_collide,
    a_stopped_customer_actor_is_restarted_with_its_state_intact,
    a_panicking_customer_actor_is_replaced_with_its_state_intact,
    an_idle_customer_actor_stops_and_comes_back_with_its_cards,
    a_dead_actor_leaves_the_registry_without_being_looked_up_again,
    bad_input_gets_its_fault_and_changes_nothing,
    a_saved_card_payment_of_a_merchant_without_limits_keeps_every_rule,
    a_new_card_payment_of_a_merchant_without_limits_keeps_every_rule
);

/// The supervision scenario: while another customer pays and lists continuously, the victim's
/// actor fails (`panic` or a supervised stop); afterwards the victim's state is intact.
async fn supervised_failure(h: &Harness, panic: bool) {
    let victim_card = h.save_card(A, "victim", VISA_OK).await;
    let bystander_card = h.save_card(A, "bystander", MASTERCARD_OK).await;
    let bystander = async {
        for i in 0..20 {
            let paid = h
                .token_pay(A, "bystander", "1.00", &bystander_card)
                .await
                .expect("bystander payment");
            assert!(paid.is_approved(), "bystander payment {i}: {paid:?}");
            assert_eq!(
                h.token_list(A, "bystander")
                    .await
                    .expect("bystander list")
                    .len(),
                1
            );
        }
    };
    let failures = async {
        for _ in 0..3 {
            h.engine
                .inject_customer_failure(A, "victim", panic)
                .await
                .expect("inject failure");
            tokio::time::sleep(Duration::from_millis(5)).await;
            let listed = h
                .token_list(A, "victim")
                .await
                .expect("the victim's next command succeeds");
            assert_eq!(
                listed.iter().map(|e| e.token.clone()).collect::<Vec<_>>(),
                vec![victim_card.clone()]
            );
        }
    };
    futures::join!(bystander, failures);
    let paid = h
        .pay_saved(A, "victim", "10.00", &victim_card, Some(CVC))
        .await
        .expect("victim payment");
    assert!(paid.is_approved());
    assert_eq!(
        h.offer(A, "victim").await.unwrap().status,
        CustomerStatus::Member
    );
}
