//! Security issue 12, finding 8: customer and order numbers holding NUL, bidi controls,
//! zero-width or other invisible characters, full-width look-alikes or only whitespace are
//! refused with the documented faults (3/1 `InvalidCustomerNumber`, 3/2 `InvalidOrderNumber`) on
//! both backends, by every request that takes them, and nothing is stored. Before the fix SQLite
//! stored them and PostgreSQL answered NUL with fault 9/1 (internal) and an ERROR log.
//! The character rules are `oneclick_actors::domain::identifier`.

use oneclick_testkit as support;

use oneclick_actors::engine::requests::{
    OfferRequest, PayNewCardRequest, RecurringInput, SetStatusRequest,
};
use oneclick_actors::Fault;
use support::attacks::identifiers::{self, HOSTILE};
use support::both_backends;
use support::engine::*;

both_backends! {
    async fn hostile_customer_numbers_are_refused_by_every_request_and_nothing_is_stored(h: Harness) {
        let before = h.counts();
        for (raw, what) in HOSTILE {
            let paid = h.pay_new(A, raw, "10.00", VISA_OK, None).await;
            assert_eq!(fault_of(paid), Fault::InvalidCustomerNumber, "pay, {what}");
            let registered = h.register(A, raw, VISA_OK).await;
            assert_eq!(fault_of(registered), Fault::InvalidCustomerNumber, "register, {what}");
            let offer = h.offer(A, raw).await;
            assert_eq!(fault_of(offer), Fault::InvalidCustomerNumber, "offer, {what}");
            let list = h.token_list(A, raw).await;
            assert_eq!(fault_of(list), Fault::InvalidCustomerNumber, "token list, {what}");
            let status = h
                .engine
                .set_status(SetStatusRequest {
                    merchant_id: A,
                    customer_number: raw.to_string(),
                    status: "deny".into(),
                    command_id: None,
                    actor: oneclick_actors::vault::audit::AuditActor::gateway(),
                })
                .await;
            assert_eq!(fault_of(status), Fault::InvalidCustomerNumber, "status, {what}");
        }
        assert_eq!(h.counts(), before, "nothing stored");
    }

    async fn hostile_order_numbers_are_refused_and_nothing_is_stored(h: Harness) {
        let before = h.counts();
        for (raw, what) in HOSTILE {
            let paid = h
                .engine
                .pay_new_card(PayNewCardRequest {
                    order: h.order(A, raw, "10.00", "alice"),
                    card: Harness::card(VISA_OK, Some(CVC)),
                    save: None,
                    recurring: RecurringInput::default(),
                })
                .await;
            assert_eq!(fault_of(paid), Fault::InvalidOrderNumber, "pay, {what}");
            let offer = h
                .engine
                .offer(OfferRequest {
                    order: h.order(A, raw, "10.00", "alice"),
                })
                .await;
            assert_eq!(fault_of(offer), Fault::InvalidOrderNumber, "offer, {what}");
        }
        assert_eq!(h.counts(), before, "nothing stored");
    }

    async fn plain_and_canonically_equivalent_identifiers_still_work_and_meet(h: Harness) {
        // Control for the two tests above: the same requests with plain values are stored, and
        // NFC makes a decomposed `José` the customer a composed one saved a card for.
        let token = h.save_card(A, "Jos\u{e9}", VISA_OK).await;
        let list = h.token_list(A, "Jose\u{301}").await.expect("token list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].token, token);
        // Surrounding spaces are kept, not trimmed: a different customer.
        let spaced = h.token_list(A, " Jos\u{e9} ").await.expect("token list");
        assert!(spaced.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_identifiers_over_nats_are_refused_on_sqlite_without_error_log() {
    let outcome = identifiers::hostile_identifiers_are_stored(Backend::Sqlite).await;
    assert!(!outcome.succeeded, "{}: {}", outcome.name, outcome.evidence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_identifiers_over_nats_are_refused_on_postgres_without_error_log() {
    let outcome = identifiers::hostile_identifiers_are_stored(Backend::Postgres).await;
    assert!(!outcome.succeeded, "{}: {}", outcome.name, outcome.evidence);
}
