//! Attacks on the vault by someone who can write its database but holds no key (issue 12,
//! finding 7): an operator with SQL access, or whoever restores a tampered backup. Each moves
//! carol's saved card to eve in one way and has eve pay with it; the attack succeeds when the
//! acquirer is asked to charge carol's card (its last four digits) for eve, or a payment is
//! approved. Each runs on a real engine over a fresh SQLite or PostgreSQL database
//! ([`crate::engine::Harness`]); the `*_on` forms take a running harness (the regression tests'
//! `both_backends!`), the plain forms start their own (`scripts/chaos/red-team`).
//!
//! Each attack first has carol pay with her card (the control): if that is not seen as a
//! charge, the probe is blind and the outcome is reported as a success, to be investigated.

use std::future::Future;

use super::AttackOutcome;
use crate::engine::{Backend, Harness, A, CVC, MASTERCARD_OK, VISA_OK};

/// carol's card number: its last four digits identify it at the acquirer.
const CAROL_PAN: &str = VISA_OK;
const EVE_PAN: &str = MASTERCARD_OK;

/// Runs `attack` on a fresh harness over a fresh `backend` database, in its own actix System.
pub fn on_fresh_harness<F, Fut>(backend: Backend, attack: F) -> AttackOutcome
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = AttackOutcome>,
{
    crate::engine::run_with(backend, crate::engine::test_settings(), attack)
}

/// What one attempt to pay as `customer` with `token` achieved.
struct Attempt {
    /// The acquirer was asked to charge carol's card.
    carol_charged: bool,
    /// A payment was approved.
    approved: bool,
    evidence: String,
}

/// Pays as `customer` with `token`, once with a CVC and once by Token Pay.
async fn pay_as(h: &Harness, customer: &str, token: &str) -> Attempt {
    let before = h.acquirer.calls();
    let saved = h.pay_saved(A, customer, "10.00", token, Some(CVC)).await;
    let token_pay = h.token_pay(A, customer, "10.00", token).await;
    let seen = h.acquirer.seen();
    let carol_last4 = &CAROL_PAN[CAROL_PAN.len() - 4..];
    let carol_charged = seen[before..].iter().any(|s| s.last4 == carol_last4);
    let describe = |r: &Result<oneclick_actors::engine::replies::PaymentResult, _>| match r {
        Ok(p) => format!("{:?} {:?}", p.order_state, p.response_code),
        Err(e) => format!("fault {}", oneclick_actors::engine::EngineError::fault(e)),
    };
    Attempt {
        carol_charged,
        approved: saved.as_ref().is_ok_and(|p| p.is_approved())
            || token_pay.as_ref().is_ok_and(|p| p.is_approved()),
        evidence: format!(
            "as {customer}: saved-card payment {}, Token Pay {}, acquirer calls {}",
            describe(&saved),
            describe(&token_pay),
            seen.len() - before
        ),
    }
}

/// carol and eve, each with a saved card; carol's control payment. Returns (carol's token,
/// eve's token, the control's evidence) or the outcome of a blind probe.
async fn carol_and_eve(
    h: &Harness,
    name: &'static str,
) -> Result<(String, String, String), AttackOutcome> {
    let carol = h.save_card(A, "carol", CAROL_PAN).await;
    let eve = h.save_card(A, "eve", EVE_PAN).await;
    let control = pay_as(h, "carol", &carol).await;
    if !(control.carol_charged && control.approved) {
        return Err(AttackOutcome {
            name,
            succeeded: true,
            evidence: format!("control failed, the probe is blind: {}", control.evidence),
        });
    }
    Ok((carol, eve, format!("control {}", control.evidence)))
}

fn outcome(name: &'static str, control: String, attempt: Attempt) -> AttackOutcome {
    AttackOutcome {
        name,
        succeeded: attempt.carol_charged || attempt.approved,
        evidence: format!("{control}; attack {}", attempt.evidence),
    }
}

/// `UPDATE cards SET customer_id = <eve>` on carol's card, then eve pays with it.
pub async fn card_moved_to_another_customer_on(h: &Harness) -> AttackOutcome {
    const NAME: &str = "vault: carol's card moved to eve by SQL (customer_id)";
    let (carol, _, control) = match carol_and_eve(h, NAME).await {
        Ok(v) => v,
        Err(blind) => return blind,
    };
    h.exec(&format!(
        "UPDATE cards SET customer_id = (SELECT id FROM customers WHERE customer_number = 'eve') \
         WHERE token = '{carol}'"
    ));
    h.after_sql_change().await;
    outcome(NAME, control, pay_as(h, "eve", &carol).await)
}

pub fn card_moved_to_another_customer(backend: Backend) -> AttackOutcome {
    on_fresh_harness(backend, |h| async move {
        card_moved_to_another_customer_on(&h).await
    })
}

/// An operator copies carol's ciphertext (with its key and AAD versions) into eve's own card
/// row, then eve pays with her own token; a second try labels it with the token-only AAD
/// version 1 (a downgrade).
pub async fn ciphertext_swapped_by_operator_on(h: &Harness) -> AttackOutcome {
    const NAME: &str = "vault: operator copies carol's ciphertext into eve's card row";
    let (carol, eve, control) = match carol_and_eve(h, NAME).await {
        Ok(v) => v,
        Err(blind) => return blind,
    };
    h.exec(&format!(
        "UPDATE cards SET \
         pan_ciphertext = (SELECT c.pan_ciphertext FROM cards c WHERE c.token = '{carol}'), \
         key_version = (SELECT c.key_version FROM cards c WHERE c.token = '{carol}'), \
         aad_version = (SELECT c.aad_version FROM cards c WHERE c.token = '{carol}') \
         WHERE token = '{eve}'"
    ));
    h.after_sql_change().await;
    let copied = pay_as(h, "eve", &eve).await;
    h.exec(&format!(
        "UPDATE cards SET aad_version = 1 WHERE token = '{eve}'"
    ));
    h.after_sql_change().await;
    let downgraded = pay_as(h, "eve", &eve).await;
    outcome(
        NAME,
        control,
        Attempt {
            carol_charged: copied.carol_charged || downgraded.carol_charged,
            approved: copied.approved || downgraded.approved,
            evidence: format!(
                "copied: {}; relabelled AAD version 1: {}",
                copied.evidence, downgraded.evidence
            ),
        },
    )
}

pub fn ciphertext_swapped_by_operator(backend: Backend) -> AttackOutcome {
    on_fresh_harness(backend, |h| async move {
        ciphertext_swapped_by_operator_on(&h).await
    })
}

/// An operator renames carol's customer row to eve's number (and eve's away), so that eve's
/// requests find carol's customer row and its cards.
pub async fn customer_row_renamed_on(h: &Harness) -> AttackOutcome {
    const NAME: &str = "vault: carol's customer row renamed to eve's number";
    let (carol, _, control) = match carol_and_eve(h, NAME).await {
        Ok(v) => v,
        Err(blind) => return blind,
    };
    h.exec("UPDATE customers SET customer_number = 'eve-before' WHERE customer_number = 'eve'");
    h.exec("UPDATE customers SET customer_number = 'eve' WHERE customer_number = 'carol'");
    h.after_sql_change().await;
    outcome(NAME, control, pay_as(h, "eve", &carol).await)
}

pub fn customer_row_renamed(backend: Backend) -> AttackOutcome {
    on_fresh_harness(
        backend,
        |h| async move { customer_row_renamed_on(&h).await },
    )
}

/// Every attack of this file on `backend`.
pub fn all(backend: Backend) -> Vec<AttackOutcome> {
    vec![
        card_moved_to_another_customer(backend),
        ciphertext_swapped_by_operator(backend),
        customer_row_renamed(backend),
    ]
}
