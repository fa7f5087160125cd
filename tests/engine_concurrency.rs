//! R12 under load: concurrent payments of one customer can never together exceed a limit, on one
//! engine (serialised by the customer's actor) or on two engines sharing one database (serialised
//! by the database's per-customer lock), and reads that do not queue behind a customer's payment.
//! Each test runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use oneclick_testkit as support;
use oneclick_testkit::both_backends;

use futures::future::join_all;

use oneclick_actors::domain::{OrderState, ResponseCode};
use oneclick_actors::engine::replies::PaymentResult;
use oneclick_actors::engine::requests::*;
use oneclick_actors::engine::EngineResult;
use oneclick_actors::Engine;
use support::engine::*;

const PAYMENTS: usize = 200;
/// 200 × 7.00 = 1400.00, over the day limit of 1000.00.
const AMOUNT: &str = "7.00";
const AMOUNT_MINOR: i64 = 700;
const DAY_LIMIT_MINOR: i64 = 100_000;

fn request(h: &Harness, customer: &str) -> PayNewCardRequest {
    PayNewCardRequest {
        order: h.order(A, &h.next_order(), AMOUNT, customer),
        card: Harness::card(VISA_OK, Some(CVC)),
        save: None,
        recurring: RecurringInput::default(),
    }
}

/// Checks the outcome: exactly floor(limit / amount) approvals, every other payment declined with
/// AS105, and the database agrees.
fn check(h: &Harness, results: Vec<EngineResult<PaymentResult>>) {
    let results: Vec<PaymentResult> = results
        .into_iter()
        .map(|r| r.expect("every payment gets an answer"))
        .collect();
    let approved: Vec<&PaymentResult> = results.iter().filter(|r| r.is_approved()).collect();
    let expected = (DAY_LIMIT_MINOR / AMOUNT_MINOR) as usize;
    assert_eq!(approved.len(), expected, "approvals");
    assert!(approved.len() as i64 * AMOUNT_MINOR <= DAY_LIMIT_MINOR);
    for r in results.iter().filter(|r| !r.is_approved()) {
        assert_eq!(
            (r.order_state, r.response_code),
            (OrderState::Declined, ResponseCode::AS105),
            "{r:?}"
        );
    }
    assert_eq!(
        h.number("SELECT COUNT(*) AS n FROM orders WHERE state = 'Approved'"),
        expected as i64
    );
    assert_eq!(
        h.number("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS n FROM orders WHERE state = 'Approved'"),
        expected as i64 * AMOUNT_MINOR
    );
    assert_eq!(h.count_rows("orders"), PAYMENTS as i64);
    assert_eq!(
        h.acquirer.calls(),
        expected,
        "declined with AS105 without asking the acquirer"
    );
    // The one card was saved once and updated by every later approval (R11).
    assert_eq!(h.count_rows("cards"), 1);
    assert_eq!(
        h.number("SELECT success_count AS n FROM cards"),
        expected as i64
    );
}

async fn r12_two_hundred_concurrent_payments_of_one_customer_never_exceed_the_day_limit(
    h: Harness,
) {
    let requests: Vec<PayNewCardRequest> = (0..PAYMENTS).map(|_| request(&h, "c1")).collect();
    let results = join_all(requests.into_iter().map(|r| h.engine.pay_new_card(r))).await;
    check(&h, results);
}

async fn r12_two_engines_sharing_one_database_never_exceed_the_day_limit_together(h: Harness) {
    let second: Engine = h.another_engine(test_settings());
    let requests: Vec<PayNewCardRequest> = (0..PAYMENTS).map(|_| request(&h, "c1")).collect();
    let results = join_all(requests.into_iter().enumerate().map(|(i, r)| {
        let engine = if i % 2 == 0 {
            h.engine.clone()
        } else {
            second.clone()
        };
        async move { engine.pay_new_card(r).await }
    }))
    .await;
    check(&h, results);
}

both_backends!(
    r12_two_hundred_concurrent_payments_of_one_customer_never_exceed_the_day_limit,
    r12_two_engines_sharing_one_database_never_exceed_the_day_limit_together
);

/// A second engine whose customer cache never expires during the test, so it can only learn
/// about changes made by the first engine from the database itself.
fn second_engine_with_a_long_cache(h: &Harness) -> Engine {
    let mut settings = test_settings();
    settings.state_ttl = std::time::Duration::from_secs(600);
    h.another_engine(settings)
}

async fn r6_fraud_set_through_one_engine_refuses_payments_on_another_at_once(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    let second = second_engine_with_a_long_cache(&h);
    // The second engine has the customer, without the flag, in its cache.
    let offer = second
        .offer(OfferRequest {
            order: h.order(A, &h.next_order(), "10.00", "c1"),
        })
        .await
        .unwrap();
    assert_eq!(offer.cards.len(), 1);
    h.set_status(A, "c1", "fraud", None).await.unwrap();
    let (before, calls) = (h.counts(), h.acquirer.calls());
    let saved = PaySavedCardRequest {
        order: h.order(A, &h.next_order(), "10.00", "c1"),
        token: token.clone(),
        cvc: Some(SecretString::new(CVC)),
    };
    assert_eq!(
        fault_of(second.pay_saved_card(saved).await),
        oneclick_actors::Fault::CustomerFraud
    );
    let mut order = h.order(A, &h.next_order(), "10.00", "c1");
    order.signature = None;
    let token_pay = TokenPayRequest {
        order,
        token_type: 5,
        token,
    };
    assert_eq!(
        fault_of(second.token_pay(token_pay).await),
        oneclick_actors::Fault::CustomerFraud
    );
    assert_eq!(
        fault_of(second.pay_new_card(request(&h, "c1")).await),
        oneclick_actors::Fault::CustomerFraud
    );
    assert_eq!(
        h.acquirer.calls(),
        calls,
        "the refused customer was not charged"
    );
    assert_eq!(h.counts(), before);
}

async fn r6_deny_set_through_one_engine_stops_saving_on_another_at_once(h: Harness) {
    h.save_card(A, "c1", VISA_OK).await;
    let second = second_engine_with_a_long_cache(&h);
    second
        .offer(OfferRequest {
            order: h.order(A, &h.next_order(), "10.00", "c1"),
        })
        .await
        .unwrap();
    h.set_status(A, "c1", "deny", None).await.unwrap();
    let mut req = request(&h, "c1");
    req.card = Harness::card(MASTERCARD_OK, Some(CVC));
    let paid = second.pay_new_card(req).await.unwrap();
    assert!(
        paid.is_approved(),
        "deny leaves payments standard: {paid:?}"
    );
    assert!(
        !paid.card_saved,
        "a denied customer's card was saved: {paid:?}"
    );
    assert_eq!(h.count_rows("cards"), 1);
}

/// A new-card verb of a customer an engine has not cached reads no snapshot
/// (`Load::CachedOrUnread`): it decides as for a customer not stored, and its writes read the
/// flags under the customer's lock. A second engine that never saw the customers: the `fraud`
/// one is refused before the acquirer is asked and nothing is stored; the `deny` one pays and
/// registers with nothing saved; a customer with a card registers a second, and the completion's
/// snapshot (both cards) is what that engine then lists.
async fn r6_new_card_verbs_of_a_customer_not_cached_check_the_flags_under_the_lock(h: Harness) {
    let first = h.save_card(A, "kept", VISA_OK).await;
    h.save_card(A, "crook", VISA_OK).await;
    h.save_card(A, "shy", VISA_OK).await;
    h.set_status(A, "crook", "fraud", None).await.unwrap();
    h.set_status(A, "shy", "deny", None).await.unwrap();
    let second = second_engine_with_a_long_cache(&h);
    let register = |customer: &str, number: &str| RegisterRequest {
        order: h.order(A, &h.next_order(), "0", customer),
        card: Harness::card(number, Some(CVC)),
    };

    let (before, calls) = (h.counts(), h.acquirer.calls());
    assert_eq!(
        fault_of(second.register(register("crook", MASTERCARD_OK)).await),
        oneclick_actors::Fault::CustomerFraud
    );
    assert_eq!(
        fault_of(second.pay_new_card(request(&h, "crook")).await),
        oneclick_actors::Fault::CustomerFraud
    );
    assert_eq!(
        h.acquirer.calls(),
        calls,
        "the fraud customer was not charged"
    );
    assert_eq!(h.counts(), before, "nothing stored for the fraud customer");

    let registered = second
        .register(register("shy", MASTERCARD_OK))
        .await
        .unwrap();
    assert!(registered.is_approved(), "{registered:?}");
    assert!(
        !registered.card_saved,
        "a denied customer's card was saved: {registered:?}"
    );
    let mut pay = request(&h, "shy");
    pay.card = Harness::card(MASTERCARD_OK, Some(CVC));
    let paid = second.pay_new_card(pay).await.unwrap();
    assert!(paid.is_approved() && !paid.card_saved, "{paid:?}");
    assert_eq!(
        h.count_rows("cards"),
        3,
        "no card saved for the denied customer"
    );

    let registered = second
        .register(register("kept", MASTERCARD_OK))
        .await
        .unwrap();
    assert!(registered.card_saved, "{registered:?}");
    let listed = second
        .token_list(TokenListRequest {
            merchant_id: A,
            customer_number: "kept".into(),
        })
        .await
        .unwrap();
    let tokens: Vec<&str> = listed.iter().map(|e| e.token.as_str()).collect();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert!(tokens.contains(&first.as_str()), "{tokens:?}");
    assert!(
        tokens.contains(&registered.token.as_deref().unwrap()),
        "{tokens:?}"
    );
}

both_backends!(
    r6_fraud_set_through_one_engine_refuses_payments_on_another_at_once,
    r6_deny_set_through_one_engine_stops_saving_on_another_at_once,
    r6_new_card_verbs_of_a_customer_not_cached_check_the_flags_under_the_lock
);

async fn r16_the_same_order_sent_to_two_engines_at_once_is_charged_once(h: Harness) {
    let second = h.another_engine(test_settings());
    let number = h.next_order();
    let twin = || PayNewCardRequest {
        order: h.order(A, &number, "10.00", "c1"),
        card: Harness::card(VISA_OK, Some(CVC)),
        save: None,
        recurring: RecurringInput::default(),
    };
    let results = join_all((0..20).map(|i| {
        let engine = if i % 2 == 0 {
            h.engine.clone()
        } else {
            second.clone()
        };
        let req = twin();
        async move { engine.pay_new_card(req).await }
    }))
    .await;
    let results: Vec<PaymentResult> = results
        .into_iter()
        .map(|r| r.expect("a repeat is not a fault"))
        .collect();
    let approved: Vec<&PaymentResult> = results.iter().filter(|r| r.is_approved()).collect();
    assert!(!approved.is_empty());
    assert!(
        approved.iter().all(|r| *r == approved[0]),
        "every repeat returns the first result"
    );
    for r in results.iter().filter(|r| !r.is_approved()) {
        // A twin that arrived while the first was at the acquirer.
        assert_eq!(
            (r.order_state, r.response_code),
            (OrderState::InProcess, ResponseCode::AS300),
            "{r:?}"
        );
    }
    assert_eq!(h.acquirer.calls(), 1, "charged once");
    assert_eq!((h.count_rows("orders"), h.count_rows("cards")), (1, 1));
    assert_eq!(h.engine.pay_new_card(twin()).await.unwrap(), *approved[0]);
}

async fn r15_concurrent_charges_of_one_agreement_are_charged_once_per_period(h: Harness) {
    let second = h.another_engine(test_settings());
    let initial = h.start_agreement(A, VISA_OK, CVC).await;
    // A period later (the initial payment starts the period).
    h.exec("UPDATE recurring_agreements SET last_charge_on = '2020-01-01'");
    let results = join_all((0..20).map(|i| {
        let engine = if i % 2 == 0 {
            h.engine.clone()
        } else {
            second.clone()
        };
        let req = RecurringChargeRequest {
            merchant_id: A,
            initial_order_number: initial.clone(),
            order_number: h.next_order(),
            amount: "100.00".into(),
            currency: "RUB".into(),
        };
        async move { engine.recurring_charge(req).await }
    }))
    .await;
    let approved = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|p| p.is_approved()))
        .count();
    assert_eq!(approved, 1, "one charge per period");
    for r in results
        .iter()
        .filter(|r| !r.as_ref().is_ok_and(|p| p.is_approved()))
    {
        assert_eq!(
            r.as_ref().map_err(|e| e.fault()).unwrap_err(),
            oneclick_actors::Fault::RecurringOutOfTerms
        );
    }
    assert_eq!(h.acquirer.calls(), 2, "the initial payment and one charge");
}

both_backends!(
    r16_the_same_order_sent_to_two_engines_at_once_is_charged_once,
    r15_concurrent_charges_of_one_agreement_are_charged_once_per_period
);

/// Many customers paying at once on one engine: every payment is answered and approved (the
/// vault's writers share the database without failing each other).
async fn payments_of_many_customers_at_once_are_all_approved(h: Harness) {
    let requests: Vec<PayNewCardRequest> = (0..200)
        .map(|i| request(&h, &format!("customer-{}", i % 50)))
        .collect();
    let results = join_all(requests.into_iter().map(|r| h.engine.pay_new_card(r))).await;
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.as_ref().is_ok_and(|p| p.is_approved()))
        .map(|r| format!("{r:?}"))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 200 payments failed: {:#?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert_eq!(
        h.number("SELECT COUNT(*) AS n FROM orders WHERE state = 'Approved'"),
        200
    );
    assert_eq!(h.count_rows("cards"), 50);
}

both_backends!(payments_of_many_customers_at_once_are_all_approved);

/// Many customers' status changes and deletions (with command ids) at once, among payments:
/// every command succeeds.
async fn commands_of_many_customers_at_once_all_succeed(h: Harness) {
    let customers: Vec<String> = (0..40).map(|i| format!("customer-{i}")).collect();
    let tokens = join_all(customers.iter().map(|c| h.save_card(A, c, VISA_OK))).await;
    let work = customers
        .iter()
        .zip(&tokens)
        .enumerate()
        .map(|(i, (c, token))| {
            let h = &h;
            async move {
                let status = h
                    .set_status(A, c, "deny", Some(&format!("deny-{i}")))
                    .await
                    .map(|_| ());
                let paid = h
                    .pay_saved(A, c, "1.00", token, Some(CVC))
                    .await
                    .map(|p| assert!(p.is_approved()));
                let deleted = h
                    .delete(A, c, token, Some(&format!("delete-{i}")))
                    .await
                    .map(|_| ());
                let again = h
                    .delete(A, c, token, Some(&format!("delete-{i}")))
                    .await
                    .map(|_| ());
                vec![status, paid, deleted, again]
            }
        });
    let failed: Vec<String> = join_all(work)
        .await
        .into_iter()
        .flatten()
        .filter_map(|r| r.err().map(|e| format!("{e:?}")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} commands failed: {:#?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert_eq!(
        h.number("SELECT COUNT(*) AS n FROM cards WHERE state = 'deleted'"),
        40
    );
    assert_eq!(h.count_rows("processed_commands"), 80);
}

both_backends!(commands_of_many_customers_at_once_all_succeed);

/// Offer and token list answer from the customer's cached state, without queueing behind the
/// customer's actor: while a payment of the same customer waits for a slow acquirer (inside the
/// actor), a token list and an offer complete first, and show the cards as before the payment.
/// Through the actor they would wait for the payment (its mailbox is closed until it ends).
async fn reads_do_not_wait_behind_a_payment_of_the_same_customer(h: Harness) {
    let token = h.save_card(A, "c1", VISA_OK).await;
    let before = h.token_list(A, "c1").await.unwrap();
    let calls = h.acquirer.calls();
    h.acquirer.set_latency(std::time::Duration::from_secs(2));
    let payment = h.pay_saved(A, "c1", "1.00", &token, Some(CVC));
    let reads = async {
        // Once the acquirer has the payment, the actor is busy with it until it answers.
        while h.acquirer.calls() == calls {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let list = h.token_list(A, "c1").await.unwrap();
        let offer = h.offer(A, "c1").await.unwrap();
        (list, offer)
    };
    tokio::pin!(payment, reads);
    let (list, offer) = tokio::select! {
        biased;
        done = &mut payment => panic!("the payment ({done:?}) ended before the reads"),
        reads = &mut reads => reads,
    };
    assert_eq!(list, before, "the cached cards, as before the payment");
    assert!(!offer.cards.is_empty(), "{offer:?}");
    assert!(payment.await.unwrap().is_approved());
}

/// The reads answer from the cached state only while it is younger than `state_ttl`; the test
/// kit's 100 ms made this test depend on the machine's speed (the reservation before the
/// acquirer call could outlast it under load, and the reads then rightly queued behind the
/// payment). The property under test is independent of the TTL's length, so it runs with a TTL
/// no step of the test can outlast.
mod reads_do_not_wait_behind_a_payment_of_the_same_customer {
    use oneclick_testkit::engine::{run_with, test_settings, Backend};

    fn settings() -> oneclick_actors::engine::EngineSettings {
        oneclick_actors::engine::EngineSettings {
            state_ttl: std::time::Duration::from_secs(60),
            ..test_settings()
        }
    }

    #[test]
    fn on_sqlite() {
        run_with(
            Backend::Sqlite,
            settings(),
            super::reads_do_not_wait_behind_a_payment_of_the_same_customer,
        );
    }

    #[test]
    fn on_postgres() {
        run_with(
            Backend::Postgres,
            settings(),
            super::reads_do_not_wait_behind_a_payment_of_the_same_customer,
        );
    }
}

/// A saved-card payment reads its card with the customer's lock (on PostgreSQL in the lock's own
/// statement). Another process blocks the card while holding that lock; the payment, which this
/// engine's cache lets through as active, waits for the lock and must then see the card blocked:
/// refused (the vault finds no usable card, the engine re-reads the customer and answers "expired
/// or blocked"), nothing charged, no order. (On PostgreSQL the statement's
/// snapshot predates the wait; without the card's row lock it would still see the card active.)
/// Run with the merchant's turnover limits (lock and card in one statement, then the limits and
/// the order) and without them (on PostgreSQL the whole reservation is one statement).
async fn a_card_blocked_by_another_process_while_a_payment_waits_is_not_charged(h: Harness) {
    blocked_while_waiting(&h, "c1").await;
    h.update_merchant(A, |m| m.limits.clear());
    blocked_while_waiting(&h, "c2").await;
}

/// Another process's connection holding `customer`'s lock (its version bumped in an open
/// transaction), as a reservation there would.
fn hold_lock(h: &Harness, customer: &str) -> RawConn {
    let mut other = RawConn::open(&h.db);
    other.exec(if h.backend == Backend::Postgres {
        "BEGIN"
    } else {
        "BEGIN IMMEDIATE"
    });
    assert_eq!(
        other.exec(&format!(
            "UPDATE customers SET version = version + 1 WHERE customer_number = '{customer}'"
        )),
        1
    );
    other
}

/// Commits `other`'s transaction once a payment waits for it (PostgreSQL: a session waits for a
/// lock; SQLite: the payment's writer sits in its busy handler meanwhile).
async fn commit_once_waiting(h: &Harness, mut other: RawConn) {
    if h.backend == Backend::Postgres {
        let mut watch = RawConn::open(&h.db);
        let waiting = "SELECT COUNT(*) AS n FROM pg_stat_activity \
                       WHERE datname = current_database() AND wait_event_type = 'Lock'";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while watch.numbers(waiting)[0] == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the payment never waited"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    } else {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    other.exec("COMMIT");
}

async fn blocked_while_waiting(h: &Harness, customer: &str) {
    let token = h.save_card(A, customer, VISA_OK).await;
    let (before, calls) = (h.counts(), h.acquirer.calls());
    let mut other = hold_lock(h, customer);
    assert_eq!(
        other.exec(&format!(
            "UPDATE cards SET state = 'blocked' WHERE token = '{token}'"
        )),
        1
    );
    let payment = h.pay_saved(A, customer, "1.00", &token, Some(CVC));
    let (paid, ()) = tokio::join!(payment, commit_once_waiting(h, other));
    assert_eq!(fault_of(paid), oneclick_actors::Fault::CardExpired);
    assert_eq!(
        h.acquirer.calls(),
        calls,
        "the blocked card was not charged"
    );
    assert_eq!(h.counts(), before, "nothing stored");
}

both_backends!(a_card_blocked_by_another_process_while_a_payment_waits_is_not_charged);

/// R12 across processes: another process reserves 850.00 for the customer while holding its
/// lock; a saved-card payment of 60.00 waits for that lock, and must then count the 850.00 with
/// the 100.00 the card was saved with: 1010.00 is over the day limit of 1000.00, declined AS105
/// without asking the acquirer. On PostgreSQL the payment's one statement read the turnover
/// before its lock wait (its snapshot predates the other commit): it must see that its read was
/// stale and read again after the lock. The same payment of 50.00 (1000.00) is approved.
async fn a_reservation_committed_while_a_payment_waits_counts_toward_its_limit(h: Harness) {
    for (customer, amount, approved) in [("w1", "60.00", false), ("w2", "50.00", true)] {
        let token = h.save_card(A, customer, VISA_OK).await;
        let calls = h.acquirer.calls();
        let mut other = hold_lock(&h, customer);
        assert_eq!(
            other.exec(&format!(
                "INSERT INTO orders (merchant_id, order_number, kind, customer_id, card_id, \
                 amount, currency, state, response_code, counts_for_limits, request_digest, \
                 created_at, updated_at) SELECT merchant_id, 'other-{customer}', kind, \
                 customer_id, card_id, 85000, currency, 'In Process', 'AS300', true, \
                 request_digest, created_at, created_at FROM orders WHERE customer_id = \
                 (SELECT id FROM customers WHERE customer_number = '{customer}')"
            )),
            1
        );
        let payment = h.pay_saved(A, customer, amount, &token, Some(CVC));
        let (paid, ()) = tokio::join!(payment, commit_once_waiting(&h, other));
        let paid = paid.unwrap();
        if approved {
            assert!(paid.is_approved(), "{customer}: {paid:?}");
            assert_eq!(h.acquirer.calls(), calls + 1, "{customer}");
        } else {
            assert_eq!(
                (paid.order_state, paid.response_code),
                (OrderState::Declined, ResponseCode::AS105),
                "{customer}: {paid:?}"
            );
            assert_eq!(h.acquirer.calls(), calls, "{customer}: not charged");
        }
        // The declined order reserves nothing: the day is still at 950.00 for w1.
        assert_eq!(
            h.number(&format!(
                "SELECT CAST(SUM(amount) AS BIGINT) AS n FROM orders WHERE counts_for_limits \
                 AND customer_id = (SELECT id FROM customers WHERE customer_number = '{customer}')"
            )),
            if approved { 100_000 } else { 95_000 },
            "{customer}"
        );
    }
}

/// R12 on two engines sharing one database, paying with one saved card: on PostgreSQL each
/// reservation is one statement that reads the turnover with its own snapshot; whichever
/// engine's statement waited for the other's lock must notice and read again. The card was saved
/// with 100.00 of the 1000.00 day limit: 128 payments of 7.00 fit (896.00), the other 72 are
/// declined AS105.
async fn r12_two_engines_paying_with_one_saved_card_never_exceed_the_day_limit_together(
    h: Harness,
) {
    let token = h.save_card(A, "s1", VISA_OK).await;
    let calls = h.acquirer.calls();
    let second: Engine = h.another_engine(test_settings());
    let results = join_all((0..PAYMENTS).map(|i| {
        let engine = if i % 2 == 0 {
            h.engine.clone()
        } else {
            second.clone()
        };
        let request = PaySavedCardRequest {
            order: h.order(A, &h.next_order(), AMOUNT, "s1"),
            token: token.clone(),
            cvc: Some(SecretString::new(CVC)),
        };
        async move { engine.pay_saved_card(request).await }
    }))
    .await;
    let fits = ((DAY_LIMIT_MINOR - 10_000) / AMOUNT_MINOR) as usize;
    let approved = results
        .iter()
        .filter(|r| r.as_ref().unwrap().is_approved())
        .count();
    assert_eq!(approved, fits, "approvals");
    for r in results.iter().map(|r| r.as_ref().unwrap()) {
        assert!(
            r.is_approved()
                || (r.order_state, r.response_code) == (OrderState::Declined, ResponseCode::AS105),
            "{r:?}"
        );
    }
    assert_eq!(
        h.acquirer.calls(),
        calls + fits,
        "declined without the acquirer"
    );
    assert_eq!(
        h.number("SELECT CAST(SUM(amount) AS BIGINT) AS n FROM orders WHERE counts_for_limits"),
        10_000 + fits as i64 * AMOUNT_MINOR
    );
}

both_backends!(
    a_reservation_committed_while_a_payment_waits_counts_toward_its_limit,
    r12_two_engines_paying_with_one_saved_card_never_exceed_the_day_limit_together
);

/// Group commit: a step that fails does not fail the others of its transaction, whether it is a
/// transaction's first step (rolled back whole, the rest go on in a new one) or a later one (its
/// savepoint is rolled back, or, on PostgreSQL, where the reservation is one statement, the
/// step deletes the order its statement inserted). Half the customers' cards cannot be decrypted (an unknown key
/// version): their payments fail inside the vault's reserve step, while the other half, sent
/// at the same moment and so committed in the same transactions, are approved and stored, and
/// nothing of the failed ones is. No transaction had to be re-run step by step.
async fn a_failing_payment_step_does_not_fail_the_others_of_its_transaction(h: Harness) {
    const CUSTOMERS: usize = 24;
    let names: Vec<String> = (0..CUSTOMERS).map(|i| format!("g{i}")).collect();
    let mut tokens = Vec::new();
    for name in &names {
        tokens.push(h.save_card(A, name, VISA_OK).await);
    }
    let broken: Vec<&String> = tokens.iter().step_by(2).collect();
    for token in &broken {
        assert_eq!(
            h.exec(&format!(
                "UPDATE cards SET key_version = 99 WHERE token = '{token}'"
            )),
            1
        );
    }
    let (_, _, failed_before) = h.engine.batch_stats();
    for round in 0..4 {
        if round == 2 {
            // With and without limits, on PostgreSQL the order is inserted by the statement
            // that reads the card, before the decryption fails: the step removes it.
            h.update_merchant(A, |m| m.limits.clear());
        }
        let (orders, calls) = (h.count_rows("orders"), h.acquirer.calls());
        let payments = names
            .iter()
            .zip(&tokens)
            .map(|(name, token)| h.pay_saved(A, name, "1.00", token, Some(CVC)));
        let results = join_all(payments).await;
        for (i, result) in results.into_iter().enumerate() {
            if i % 2 == 0 {
                assert_eq!(
                    fault_of(result),
                    oneclick_actors::Fault::Internal,
                    "round {round}, g{i}"
                );
            } else {
                assert!(result.unwrap().is_approved(), "round {round}, g{i}");
            }
        }
        assert_eq!(
            h.count_rows("orders"),
            orders + CUSTOMERS as i64 / 2,
            "round {round}"
        );
        assert_eq!(h.acquirer.calls(), calls + CUSTOMERS / 2, "round {round}");
    }
    let (_, _, failed_after) = h.engine.batch_stats();
    assert_eq!(
        failed_after, failed_before,
        "no transaction was re-run step by step"
    );
}

both_backends!(a_failing_payment_step_does_not_fail_the_others_of_its_transaction);

/// A lone payment step (nobody to share a transaction with) runs without `BEGIN`/`COMMIT` on
/// PostgreSQL when it writes with one statement: the saved-card reservation is then committed
/// before the card is decrypted. A card that cannot be opened must still leave nothing behind:
/// one payment at a time, with and without turnover limits, each a transaction of one step.
async fn a_lone_payment_whose_card_cannot_be_opened_leaves_nothing(h: Harness) {
    let broken = h.save_card(A, "lone-broken", VISA_OK).await;
    let fine = h.save_card(A, "lone-fine", VISA_OK).await;
    assert_eq!(
        h.exec(&format!(
            "UPDATE cards SET key_version = 99 WHERE token = '{broken}'"
        )),
        1
    );
    for round in 0..2 {
        if round == 1 {
            h.update_merchant(A, |m| m.limits.clear());
        }
        for _ in 0..3 {
            let (before, calls) = (h.counts(), h.acquirer.calls());
            let (batches, steps, _) = h.engine.batch_stats();
            let paid = h
                .pay_saved(A, "lone-broken", "1.00", &broken, Some(CVC))
                .await;
            assert_eq!(
                fault_of(paid),
                oneclick_actors::Fault::Internal,
                "round {round}"
            );
            assert_eq!(h.counts(), before, "round {round}: nothing stored");
            assert_eq!(h.acquirer.calls(), calls, "round {round}: nothing charged");
            let (batches_after, steps_after, _) = h.engine.batch_stats();
            assert_eq!(
                (batches_after - batches, steps_after - steps),
                (1, 1),
                "round {round}: the reservation was a step of its own"
            );
            let paid = h.pay_saved(A, "lone-fine", "1.00", &fine, Some(CVC)).await;
            assert!(paid.unwrap().is_approved(), "round {round}");
            assert_eq!(
                h.count_rows("orders"),
                before["orders"] + 1,
                "round {round}"
            );
        }
    }
}

both_backends!(a_lone_payment_whose_card_cannot_be_opened_leaves_nothing);

/// A payment that saves its card completes (on PostgreSQL in one statement that also returns
/// the customer's cards for the actor's cache) while another process holds the customer's lock
/// and adds a card: the completion waits for that lock, and the cache it leaves must hold all
/// three cards (the first, the other process's, the new one), not the two its statement's
/// snapshot, taken before the wait, saw.
mod a_card_added_while_a_save_waits_is_in_the_cache_after_it {
    use super::*;
    use oneclick_testkit::engine::{run_with, test_settings, Backend};

    fn settings() -> oneclick_actors::engine::EngineSettings {
        oneclick_actors::engine::EngineSettings {
            // The token list below answers from the actor's cache.
            state_ttl: std::time::Duration::from_secs(60),
            ..test_settings()
        }
    }

    async fn scenario(h: Harness) {
        let first = h.save_card(A, "k1", VISA_OK).await;
        let calls = h.acquirer.calls();
        h.acquirer
            .set_latency(std::time::Duration::from_millis(300));
        let payment = h.pay_new(A, "k1", "10.00", MASTERCARD_OK, None);
        let other = async {
            // The reservation is committed once the acquirer is asked.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while h.acquirer.calls() == calls {
                assert!(std::time::Instant::now() < deadline, "never authorized");
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            let mut other = super::hold_lock(&h, "k1");
            assert_eq!(
                other.exec(&format!(
                    "INSERT INTO cards (token, customer_id, state, brand, bin, last4, \
                     pan_length, expiry_month, expiry_year, holder, pan_ciphertext, \
                     key_version, aad_version, fingerprint, saved_by_merchant, saved_at, \
                     last_used_at, success_count) SELECT \
                     '0B0B0B0B-0000-4000-8000-000000000001', customer_id, state, brand, bin, \
                     last4, pan_length, expiry_month, expiry_year, holder, pan_ciphertext, \
                     key_version, aad_version, NULL, saved_by_merchant, saved_at, \
                     last_used_at, success_count FROM cards WHERE token = '{first}'"
                )),
                1
            );
            super::commit_once_waiting(&h, other).await;
        };
        let (paid, ()) = tokio::join!(payment, other);
        h.acquirer.set_latency(std::time::Duration::ZERO);
        let paid = paid.unwrap();
        assert!(paid.is_approved() && paid.card_saved, "{paid:?}");
        let list = h.token_list(A, "k1").await.unwrap();
        assert_eq!(list.len(), 3, "{list:?}");
        assert_eq!(h.count_rows("cards"), 3);
    }

    #[test]
    fn on_sqlite() {
        run_with(Backend::Sqlite, settings(), scenario);
    }

    #[test]
    fn on_postgres() {
        run_with(Backend::Postgres, settings(), scenario);
    }
}

/// SQLite: the engine copies the WAL back into the database file in a thread of its own
/// (`group_commit::start_checkpointer`), so the one writer never stops a batch for it. Shown
/// from outside: a copy of the database file alone (without its `-wal`) holds the payments
/// within moments, where SQLite's own threshold, raised to a backstop of 10,000 pages, would
/// not have copied this handful of payments back at all.
#[test]
fn sqlite_payments_reach_the_database_file_through_the_engines_checkpoints() {
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    run(Backend::Sqlite, |h: Harness| async move {
        for i in 0..5 {
            h.save_card(A, &format!("ck{i}"), VISA_OK).await;
        }
        let orders = h.count_rows("orders");
        assert_eq!(orders, 5);
        let file = std::path::PathBuf::from(h.db.url.trim_start_matches("sqlite://"));
        let scratch = tempfile::tempdir().unwrap();
        let copy = scratch.path().join("copy.db");
        let in_the_file = || -> Option<i64> {
            std::fs::copy(&file, &copy).ok()?;
            let _ = std::fs::remove_file(scratch.path().join("copy.db-wal"));
            let mut c = SqliteConnection::establish(copy.to_str()?).ok()?;
            diesel::sql_query("SELECT COUNT(*) AS n FROM orders")
                .get_result::<Count>(&mut c)
                .ok()
                .map(|r| r.n)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = None;
        while std::time::Instant::now() < deadline {
            seen = in_the_file();
            if seen == Some(orders) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the database file alone holds {seen:?} of {orders} orders after 10 s");
    });
}

/// Saved-card payments of many customers at once: on PostgreSQL the group commit runs a
/// batch's reservations as one statement and its plain claims as another (`vault::batch`).
/// Each payment must be answered as it would be alone: approved within its own customer's day
/// limit, declined AS105 beyond it without asking the acquirer, its card counted once per
/// approval, nothing left `In Process`. On SQLite the per-row statements answer the same.
async fn saved_card_payments_committed_together_answer_as_they_would_alone(h: Harness) {
    const CUSTOMERS: usize = 16;
    let names: Vec<String> = (0..CUSTOMERS).map(|i| format!("t{i}")).collect();
    let mut tokens = Vec::new();
    for name in &names {
        // 100.00 of the day's turnover each.
        tokens.push(h.save_card(A, name, VISA_OK).await);
    }
    h.update_merchant(A, |m| {
        m.limits = vec![("RUB".into(), Some(30_000), Some(100_000))]
    });
    let together_before = h.engine.steps_together();
    // 100 + 150 fits the 300.00 day; + 100 does not; + 50 is the limit exactly.
    for (round, amount, approved) in [
        (0, "150.00", true),
        (1, "100.00", false),
        (2, "50.00", true),
    ] {
        let calls = h.acquirer.calls();
        let payments = names
            .iter()
            .zip(&tokens)
            .map(|(name, token)| h.pay_saved(A, name, amount, token, Some(CVC)));
        for (i, paid) in join_all(payments).await.into_iter().enumerate() {
            let paid = paid.unwrap();
            if approved {
                assert!(paid.is_approved(), "round {round}, t{i}: {paid:?}");
            } else {
                assert_eq!(
                    (paid.order_state, paid.response_code),
                    (OrderState::Declined, ResponseCode::AS105),
                    "round {round}, t{i}"
                );
            }
        }
        let asked = if approved { CUSTOMERS } else { 0 };
        assert_eq!(h.acquirer.calls(), calls + asked, "round {round}");
    }
    for name in &names {
        let of = format!("(SELECT id FROM customers WHERE customer_number = '{name}')");
        assert_eq!(
            h.number(&format!(
                "SELECT CAST(SUM(amount) AS BIGINT) AS n FROM orders \
                 WHERE counts_for_limits AND customer_id = {of}"
            )),
            30_000,
            "{name}: the day's turnover is the limit exactly"
        );
        assert_eq!(
            h.number(&format!(
                "SELECT success_count AS n FROM cards WHERE customer_id = {of}"
            )),
            3,
            "{name}: saved once, approved twice"
        );
    }
    assert_eq!(
        h.number("SELECT COUNT(*) AS n FROM orders WHERE state = 'In Process'"),
        0
    );
    let together = h.engine.steps_together() - together_before;
    if h.backend == Backend::Postgres {
        assert!(together > 0, "no statement ran for several steps");
    } else {
        assert_eq!(together, 0, "SQLite keeps its per-row statements");
    }
}

both_backends!(saved_card_payments_committed_together_answer_as_they_would_alone);

/// Registrations of many customers at once: on PostgreSQL the group commit runs a batch's new
/// cards' reservations as one statement (`vault::batch::ReserveNewCards`) and its saving
/// completions as another (`CompleteSavingCards`). Each must be answered as it would be alone,
/// in one round with the others: new customers created with their card saved, a `fraud`
/// customer refused before the acquirer is asked, an existing customer's second card saved
/// beside its first, the same number saved again keeping its token (R11), a `deny` customer's
/// card not saved (R6), the repeat of a stored registration answered
/// with its stored reply (not charged again), and the same order number sent for a second
/// customer an idempotency conflict; the new-card payments beside them (limits on: the per-row
/// path) approved.
async fn registrations_reserved_together_answer_as_they_would_alone(h: Harness) {
    const NEW: usize = 16;
    h.save_card(A, "crook", VISA_OK).await;
    // Flagged by another process: this engine may still have the customer cached unflagged,
    // so the refusal is the reservation's (under the lock), not the cached snapshot's.
    assert_eq!(
        RawConn::open(&h.db)
            .exec("UPDATE customers SET fraud = true WHERE customer_number = 'crook'"),
        1
    );
    let kept = h.save_card(A, "kept", VISA_OK).await;
    let again = h.save_card(A, "again", VISA_OK).await;
    h.save_card(A, "shy", VISA_OK).await;
    assert_eq!(
        RawConn::open(&h.db).exec("UPDATE customers SET deny = true WHERE customer_number = 'shy'"),
        1
    );
    let register = |number: &str, customer: &str, card: &str| RegisterRequest {
        order: h.order(A, number, "0", customer),
        card: Harness::card(card, Some(CVC)),
    };
    let stored_number = h.next_order();
    let stored = h
        .engine
        .register(register(&stored_number, "back", VISA_OK))
        .await
        .unwrap();
    assert!(stored.card_saved, "{stored:?}");

    let (calls, together_before) = (h.acquirer.calls(), h.engine.steps_together());
    let mut requests: Vec<RegisterRequest> = (0..NEW)
        .map(|i| register(&h.next_order(), &format!("n{i}"), VISA_OK))
        .collect();
    requests.push(register(&h.next_order(), "again", VISA_OK));
    requests.push(register(&h.next_order(), "shy", MASTERCARD_OK));
    requests.push(register(&h.next_order(), "crook", MASTERCARD_OK));
    requests.push(register(&h.next_order(), "kept", MASTERCARD_OK));
    requests.push(register(&stored_number, "back", VISA_OK));
    requests.push(register(&stored_number, "other", VISA_OK));
    let registrations = join_all(requests.into_iter().map(|r| h.engine.register(r)));
    let payers: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
    let payments = join_all(
        payers
            .iter()
            .map(|p| h.pay_new(A, p, "10.00", VISA_OK, None)),
    );
    let (mut answers, paid) = tokio::join!(registrations, payments);
    for (i, paid) in paid.into_iter().enumerate() {
        let paid = paid.unwrap();
        assert!(paid.is_approved() && paid.card_saved, "p{i}: {paid:?}");
    }

    let other = answers.pop().unwrap();
    assert_eq!(fault_of(other), oneclick_actors::Fault::IdempotencyConflict);
    assert_eq!(answers.pop().unwrap().unwrap(), stored, "the stored reply");
    let second = answers.pop().unwrap().unwrap();
    assert!(second.card_saved, "{second:?}");
    assert_eq!(
        fault_of(answers.pop().unwrap()),
        oneclick_actors::Fault::CustomerFraud
    );
    let shy = answers.pop().unwrap().unwrap();
    assert!(shy.is_approved() && !shy.card_saved, "denied: {shy:?}");
    let same = answers.pop().unwrap().unwrap();
    assert_eq!(
        (same.card_saved, same.token.as_deref()),
        (true, Some(again.as_str())),
        "R11: the same number keeps its token"
    );
    let mut tokens = std::collections::HashSet::new();
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap();
        assert!(
            answer.is_approved() && answer.card_saved,
            "n{i}: {answer:?}"
        );
        assert!(
            tokens.insert(answer.token.clone().unwrap()),
            "n{i}: {answer:?}"
        );
        assert_eq!(
            h.number(&format!(
                "SELECT COUNT(*) AS n FROM cards JOIN customers ON customers.id =                  cards.customer_id WHERE customer_number = 'n{i}'"
            )),
            1,
            "n{i}"
        );
    }
    // The new customers, the second card, the same card again, the denied customer's and the
    // four payments; never the fraud customer, the repeat or the conflict.
    assert_eq!(h.acquirer.calls(), calls + NEW + 3 + 4);
    for (customer, cards) in [("again", 1), ("shy", 1)] {
        assert_eq!(
            h.number(&format!(
                "SELECT COUNT(*) AS n FROM cards JOIN customers ON customers.id = \
                 cards.customer_id WHERE customer_number = '{customer}'"
            )),
            cards,
            "{customer}"
        );
    }
    assert_eq!(
        h.number(&format!(
            "SELECT success_count AS n FROM cards WHERE token = '{again}'"
        )),
        2,
        "saved, then saved again"
    );
    let listed: Vec<String> = h
        .token_list(A, "kept")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.token)
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&kept) && listed.contains(second.token.as_ref().unwrap()));
    assert_eq!(
        h.number("SELECT COUNT(*) AS n FROM customers WHERE customer_number = 'other'"),
        0,
        "the conflicting order created no customer"
    );
    assert_eq!(
        h.number("SELECT COUNT(*) AS n FROM orders WHERE state = 'In Process'"),
        0
    );
    let together = h.engine.steps_together() - together_before;
    if h.backend == Backend::Postgres {
        assert!(together > 0, "no statement ran for several steps");
    } else {
        assert_eq!(together, 0, "SQLite keeps its per-row statements");
    }
}

both_backends!(registrations_reserved_together_answer_as_they_would_alone);

/// PostgreSQL: the statement that reserves several saved-card payments at once takes its
/// snapshot before it waits for their customers' locks, as the one-payment statement does
/// (`a_reservation_committed_while_a_payment_waits_counts_toward_its_limit`): a reservation
/// committed meanwhile must count toward the limit. One writer: a first payment waits for a
/// lock held by connection `first`, while two more queue up behind it and go into one
/// statement once it is done; that statement then waits for connection `second`, which
/// commits an 850.00 order of each of the two customers. With the card's 100.00 and the 60.00
/// asked, both are over the 1000.00 day limit: declined, the acquirer not asked.
async fn a_reservation_committed_while_payments_wait_together_counts_toward_their_limits(
    h: Harness,
) {
    let names = ["wt0", "wt1", "wt2"];
    let mut tokens = Vec::new();
    for name in names {
        tokens.push(h.save_card(A, name, VISA_OK).await);
    }
    let first = hold_lock(&h, "wt0");
    let mut second = hold_lock(&h, "wt1");
    assert_eq!(
        second.exec("UPDATE customers SET version = version + 1 WHERE customer_number = 'wt2'"),
        1
    );
    assert_eq!(
        second.exec(
            "INSERT INTO orders (merchant_id, order_number, kind, customer_id, card_id, \
             amount, currency, state, response_code, counts_for_limits, request_digest, \
             created_at, updated_at) SELECT merchant_id, 'other-' || customer_id, kind, \
             customer_id, card_id, 85000, currency, 'In Process', 'AS300', true, \
             request_digest, created_at, created_at FROM orders WHERE customer_id IN \
             (SELECT id FROM customers WHERE customer_number IN ('wt1', 'wt2'))"
        ),
        2
    );
    let calls = h.acquirer.calls();
    let together_before = h.engine.steps_together();
    let waiting = h.pay_saved(A, "wt0", "1.00", &tokens[0], Some(CVC));
    let queued = join_all([1, 2].map(|i| h.pay_saved(A, names[i], "60.00", &tokens[i], Some(CVC))));
    let release = async {
        // The one writer waits for `first`; the two payments queue up behind it.
        commit_once_waiting(&h, first).await;
        // Their one statement runs, and waits for `second`.
        let mut watch = RawConn::open(&h.db);
        let waiting = "SELECT COUNT(*) AS n FROM pg_stat_activity \
                       WHERE datname = current_database() AND wait_event_type = 'Lock' \
                       AND query LIKE '%WITH ORDINALITY%'";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while watch.numbers(waiting)[0] == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the queued payments' statement never waited"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        second.exec("COMMIT");
    };
    let (paid, together, ()) = tokio::join!(
        waiting,
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            queued.await
        },
        async {
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            release.await
        }
    );
    assert!(paid.unwrap().is_approved());
    for (i, paid) in together.into_iter().enumerate() {
        let paid = paid.unwrap();
        assert_eq!(
            (paid.order_state, paid.response_code),
            (OrderState::Declined, ResponseCode::AS105),
            "wt{}: {paid:?}",
            i + 1
        );
    }
    assert_eq!(h.acquirer.calls(), calls + 1, "only wt0 was charged");
    assert_eq!(
        h.engine.steps_together() - together_before,
        2,
        "the two queued payments were reserved by one statement"
    );
}

/// Two saved-card payments of two customers under one order number (a merchant's mistake, or
/// an attack on R16), queued together behind a waiting one: one order, one charge. The first to
/// reserve is approved; the other is an idempotency conflict, its card never sent to the
/// acquirer (its statement must not take the other customer's order for its own).
async fn one_order_number_for_two_customers_queued_together_is_charged_once(h: Harness) {
    let names = ["dup0", "dup1", "dup2"];
    let mut tokens = Vec::new();
    for name in names {
        tokens.push(h.save_card(A, name, VISA_OK).await);
    }
    let first = hold_lock(&h, "dup0");
    let calls = h.acquirer.calls();
    let waiting = h.pay_saved(A, "dup0", "1.00", &tokens[0], Some(CVC));
    let number = h.next_order();
    let queued = join_all([1, 2].map(|i| {
        let order = h.order(A, &number, "10.00", names[i]);
        let pay = PaySavedCardRequest {
            order,
            token: tokens[i].clone(),
            cvc: Some(SecretString::new(CVC)),
        };
        h.engine.pay_saved_card(pay)
    }));
    let (paid, twins, ()) = tokio::join!(
        waiting,
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            queued.await
        },
        async {
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            commit_once_waiting(&h, first).await
        }
    );
    assert!(paid.unwrap().is_approved());
    let approved: Vec<&PaymentResult> = twins
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|p| p.is_approved())
        .collect();
    assert_eq!(approved.len(), 1, "{twins:?}");
    let refused: Vec<oneclick_actors::Fault> = twins
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.fault()))
        .collect();
    assert_eq!(
        refused,
        vec![oneclick_actors::Fault::IdempotencyConflict],
        "{twins:?}"
    );
    assert_eq!(
        h.acquirer.calls(),
        calls + 2,
        "dup0 and one twin were charged"
    );
    assert_eq!(
        h.number(&format!(
            "SELECT COUNT(*) AS n FROM orders WHERE order_number = '{number}'"
        )),
        1
    );
}

/// PostgreSQL: the group commit's writers read customers and cards by their indexes, never by
/// a sequential scan (`group_commit::WRITER_SESSION_POSTGRES`). In a test the tables are a page
/// or two, where the planner prefers a scan to any index for the batch statements' generic
/// plans (and for the per-row ones): without the writers' setting, every batch scans. Rounds of
/// registrations of new customers (no read of their snapshot: only writer statements touch the
/// two tables), bracketed by pauses over a second so the writers' statistics reach the shared
/// counters (PostgreSQL flushes a backend's table counters at most once a second).
async fn the_writers_never_scan_the_customers_or_cards_tables(h: Harness) {
    const SEQ_SCANS: &str = "SELECT CAST(COALESCE(SUM(seq_scan), 0) AS BIGINT) AS n \
                             FROM pg_stat_user_tables WHERE relname IN ('customers', 'cards')";
    let round = |r: usize| {
        let requests: Vec<RegisterRequest> = (0..16)
            .map(|i| RegisterRequest {
                order: h.order(A, &h.next_order(), "0", &format!("scan-{r}-{i}")),
                card: Harness::card(VISA_OK, Some(CVC)),
            })
            .collect();
        async {
            for answer in join_all(requests.into_iter().map(|r| h.engine.register(r))).await {
                let answer = answer.unwrap();
                assert!(answer.card_saved, "{answer:?}");
            }
        }
    };
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(1_100));
    round(0).await;
    pause().await;
    round(1).await;
    let before = h.number(SEQ_SCANS);
    for r in 2..10 {
        round(r).await;
    }
    // Each writer's next transaction after a pause flushes what it counted before.
    for r in 10..12 {
        pause().await;
        round(r).await;
    }
    pause().await;
    assert_eq!(
        h.number(SEQ_SCANS) - before,
        0,
        "sequential scans of customers or cards while only the writers used them"
    );
    assert!(
        h.engine.steps_together() > 0,
        "no statement ran for several steps"
    );
}

#[test]
fn the_writers_never_scan_the_customers_or_cards_tables_on_postgres() {
    run_with(
        Backend::Postgres,
        test_settings(),
        the_writers_never_scan_the_customers_or_cards_tables,
    );
}

#[test]
fn one_order_number_for_two_customers_queued_together_is_charged_once_on_postgres() {
    run_with(
        Backend::Postgres,
        oneclick_actors::engine::EngineSettings {
            group_commit_writers: 1,
            ..test_settings()
        },
        one_order_number_for_two_customers_queued_together_is_charged_once,
    );
}

#[test]
fn a_reservation_committed_while_payments_wait_together_counts_toward_their_limits_on_postgres() {
    run_with(
        Backend::Postgres,
        oneclick_actors::engine::EngineSettings {
            group_commit_writers: 1,
            ..test_settings()
        },
        a_reservation_committed_while_payments_wait_together_counts_toward_their_limits,
    );
}
