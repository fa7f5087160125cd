//! The audit trail (PCI DSS 10.2, security issue 12 finding 11) and signing-key rotation, through
//! the engine against real databases: every test runs on SQLite and on PostgreSQL.
//!
//! - each kind of change (status set/cleared, card deleted by the merchant, the payment page or a
//!   durable command, a customer leaving, merchant settings, a signing-key rotation) leaves exactly
//!   one row with its actor and action; a replayed command and a refused change leave none;
//! - the database refuses UPDATE and DELETE of audit rows (the red-team attack
//!   `attacks::audit::tamper_with_audit_trail`, with its control);
//! - no audit row holds card data (the card-scan needles);
//! - `save_merchant` changes only the fields named, never the signature key;
//! - after a rotation the old key verifies until its overlap ends, then fails with 3/10.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use oneclick_testkit as support;
use oneclick_testkit::both_backends;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use oneclick_actors::domain::signature;
use oneclick_actors::engine::requests::*;
use oneclick_actors::vault::audit::AuditActor;
use oneclick_actors::vault::merchants::{
    rotate_signing_key, save_merchant, Change, MerchantChanges, RotateOutcome, RotateSigningKey,
    SaveMerchant, SaveOutcome,
};
use oneclick_actors::vault::now_ms;
use oneclick_actors::Fault;
use support::attacks::audit::tamper_with_audit_trail;
use support::card_scan::{needles, sweep, Haystack};
use support::engine::*;

/// `actor|action|merchant|customer|token` of every audit row, oldest first.
fn audit_rows(h: &Harness) -> Vec<String> {
    h.texts(
        "SELECT actor || '|' || action || '|' || COALESCE(CAST(merchant_id AS TEXT), '-') || '|' \
         || COALESCE(customer_number, '-') || '|' || COALESCE(token, '-') AS v \
         FROM audit_log ORDER BY id",
    )
    .into_iter()
    .flatten()
    .collect()
}

fn merchant_actor(id: i64) -> String {
    format!("merchant:{id}:{LOGIN}")
}

both_backends! {
    async fn each_customer_change_leaves_exactly_one_audit_row_with_its_actor_and_action(h: Harness) {
        let token = h.save_card(A, "aud-1", VISA_OK).await;
        let token2 = h.save_card(A, "aud-1", MASTERCARD_OK).await;
        assert_eq!(audit_rows(&h), Vec::<String>::new(), "payments are not audited changes");

        // Merchant over NATS (`customers.status`): set and clear Deny.
        h.set_status(A, "aud-1", "deny", None).await.unwrap();
        h.set_status(A, "aud-1", "clear_deny", None).await.unwrap();
        // A durable status command, delivered twice: one effect, one row.
        for _ in 0..2 {
            h.engine
                .set_status(SetStatusRequest {
                    merchant_id: A,
                    customer_number: "aud-1".into(),
                    status: "fraud".into(),
                    command_id: Some("st-1".into()),
                    actor: AuditActor::gateway(),
                })
                .await
                .unwrap();
        }
        // The payment page deletes one card; deleting it again is refused and not recorded.
        h.engine
            .delete_card(DeleteCardRequest {
                merchant_id: A,
                customer_number: "aud-1".into(),
                token: token.clone(),
                command_id: None,
                actor: AuditActor::gateway(),
            })
            .await
            .unwrap();
        assert_eq!(fault_of(h.delete(A, "aud-1", &token, None).await), Fault::TokenNotFound);
        // The customer leaves: one status row naming the card it deleted.
        h.set_status(A, "aud-1", "leave", None).await.unwrap();

        let m = merchant_actor(A);
        assert_eq!(
            audit_rows(&h),
            vec![
                format!("{m}|customer.status_changed|{A}|aud-1|-"),
                format!("{m}|customer.status_changed|{A}|aud-1|-"),
                format!("gateway|customer.status_changed|{A}|aud-1|-"),
                format!("gateway|card.deleted|{A}|aud-1|{token}"),
                format!("{m}|customer.status_changed|{A}|aud-1|-"),
            ]
        );
        let details = h.texts("SELECT detail AS v FROM audit_log ORDER BY id");
        let detail = |i: usize| -> serde_json::Value {
            serde_json::from_str(details[i].as_deref().unwrap()).unwrap()
        };
        assert_eq!(detail(0)["status"], "deny");
        assert_eq!(detail(1)["status"], "clear_deny");
        assert_eq!(detail(2)["command_id"], "st-1");
        assert_eq!(detail(4)["cards_deleted"], serde_json::json!([token2]));
    }

    async fn a_merchant_card_deletion_by_durable_command_is_recorded_once_however_often_delivered(h: Harness) {
        let token = h.save_card(B, "aud-2", VISA_OK).await;
        for _ in 0..3 {
            h.delete(B, "aud-2", &token, Some("del-1")).await.unwrap();
        }
        assert_eq!(
            audit_rows(&h),
            vec![format!("{}|card.deleted|{B}|aud-2|{token}", merchant_actor(B))]
        );
    }

    async fn no_audit_row_holds_card_data(h: Harness) {
        let pans = [VISA_OK, MASTERCARD_OK, MIR_OK];
        let mut tokens = Vec::new();
        for (i, pan) in pans.iter().enumerate() {
            tokens.push(h.save_card(A, &format!("scan-{i}"), pan).await);
        }
        let hex_sql = match h.backend {
            Backend::Sqlite => "SELECT lower(hex(pan_ciphertext)) AS v FROM cards",
            Backend::Postgres => "SELECT encode(pan_ciphertext, 'hex') AS v FROM cards",
        };
        let ciphertexts: Vec<String> = h.texts(hex_sql).into_iter().flatten().collect();
        assert_eq!(ciphertexts.len(), 3);
        h.delete(A, "scan-0", &tokens[0], None).await.unwrap();
        h.set_status(A, "scan-1", "leave", Some("leave-1")).await.unwrap();
        h.set_status(A, "scan-2", "deny", None).await.unwrap();
        let rows = h.texts(
            "SELECT actor || ' ' || action || ' ' || COALESCE(customer_number, '') || ' ' || \
             COALESCE(token, '') || ' ' || detail AS v FROM audit_log",
        );
        assert_eq!(rows.len(), 3);
        let haystacks: Vec<Haystack> = rows
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, text)| Haystack {
                place: format!("audit_log row {i}"),
                bytes: text.into_bytes(),
                numbers_only: false,
            })
            .collect();
        let pans: Vec<String> = pans.iter().map(|p| p.to_string()).collect();
        let found = sweep(&haystacks, &needles(&pans, &[CVC.to_string()]));
        assert!(found.is_empty(), "card data in the audit trail: {found:?}");
        for c in &ciphertexts {
            let b64 = BASE64.encode(support::card_scan::unhex(c));
            for h in &haystacks {
                let text = String::from_utf8_lossy(&h.bytes).to_lowercase();
                assert!(!text.contains(c.as_str()), "ciphertext (hex) in {}", h.place);
                assert!(!String::from_utf8_lossy(&h.bytes).contains(&b64), "ciphertext (base64) in {}", h.place);
            }
        }
        // Control: the same scan finds a PAN when one is there.
        let planted = Haystack {
            place: "control".into(),
            bytes: format!("{{\"note\":\"{VISA_OK}\"}}").into_bytes(),
            numbers_only: false,
        };
        assert!(!sweep(&[planted], &needles(&pans, &[])).is_empty());
    }

    async fn saving_one_merchant_field_changes_only_it_and_records_it(h: Harness) {
        let columns = "SELECT name || '|' || CAST(union_id AS TEXT) || '|' || \
            CAST(list_threshold AS TEXT) || '|' || time_zone || '|' || signature_key || '|' || mode \
            AS v FROM merchants WHERE id = 452739";
        let limits = "SELECT currency || ':' || CAST(day_limit AS TEXT) || ':' || \
            CAST(week_limit AS TEXT) AS v FROM merchant_limits WHERE merchant_id = 452739";
        let (before, limits_before) = (h.texts(columns), h.texts(limits));
        let outcome = {
            let mut conn = h.pool.get().unwrap();
            save_merchant(
                &mut conn,
                &h.keyring,
                SaveMerchant {
                    id: A,
                    changes: MerchantChanges {
                        need_cvc: Some(false),
                        // Named with its current value: not a change.
                        list_threshold: Some(1),
                        ..Default::default()
                    },
                    signature_key: None,
                    actor: AuditActor::admin_cli("tester"),
                },
            )
            .unwrap()
        };
        assert_eq!(
            outcome,
            SaveOutcome::Updated(vec![Change {
                field: "need_cvc".into(),
                old: Some("true".into()),
                new: Some("false".into()),
            }])
        );
        assert_eq!(h.texts(columns), before);
        assert_eq!(h.texts(limits), limits_before);
        assert_eq!(h.number("SELECT COUNT(*) AS n FROM merchants WHERE id = 452739 AND NOT need_cvc"), 1);
        h.engine.invalidate_merchant(A);
        // Orders signed with the unchanged key still pass (R2).
        h.offer(A, "sig-1").await.unwrap();
        assert_eq!(
            audit_rows(&h),
            vec![format!("admin-cli:tester|merchant.updated|{A}|-|-")]
        );
        // A key on an existing merchant is refused; naming nothing new changes and records nothing.
        let mut conn = h.pool.get().unwrap();
        let refused = save_merchant(
            &mut conn,
            &h.keyring,
            SaveMerchant {
                id: A,
                changes: MerchantChanges { need_cvc: Some(false), ..Default::default() },
                signature_key: Some(BASE64.encode(b"sneaky")),
                actor: AuditActor::admin_cli("tester"),
            },
        )
        .unwrap();
        assert_eq!(refused, SaveOutcome::SigningKeyExists);
        let unchanged = save_merchant(
            &mut conn,
            &h.keyring,
            SaveMerchant {
                id: A,
                changes: MerchantChanges { need_cvc: Some(false), ..Default::default() },
                signature_key: None,
                actor: AuditActor::admin_cli("tester"),
            },
        )
        .unwrap();
        assert_eq!(unchanged, SaveOutcome::Unchanged);
        assert_eq!(audit_rows(&h).len(), 1);
    }

    async fn old_key_signatures_verify_during_the_rotation_overlap_then_fail_with_3_10(h: Harness) {
        let new_key = b"the-new-signing-key-of-merchant-a".to_vec();
        let overlap = Duration::from_secs(3);
        let rotated_at = now_ms();
        let outcome = {
            let mut conn = h.pool.get().unwrap();
            rotate_signing_key(
                &mut conn,
                &h.keyring,
                RotateSigningKey {
                    merchant_id: A,
                    new_key: BASE64.encode(&new_key),
                    overlap_ms: overlap.as_millis() as i64,
                    actor: AuditActor::admin_cli("tester"),
                    now_ms: rotated_at,
                },
            )
            .unwrap()
        };
        assert!(matches!(outcome, RotateOutcome::Rotated { previous_until: Some(u), .. } if u == rotated_at + 3000));
        h.engine.invalidate_merchant(A);
        let offer_signed_with = |key: Vec<u8>| {
            let order_number = h.next_order();
            let msg = signature::message(&A.to_string(), &order_number, "10.00", "RUB", "rot-1");
            let order = OrderInput {
                merchant_id: A,
                order_number,
                amount: "10.00".into(),
                currency: "RUB".into(),
                customer_number: Some("rot-1".into()),
                signature: Some(signature::sign(&key, &msg)),
            };
            h.engine.offer(OfferRequest { order })
        };
        offer_signed_with(signature_key(A)).await.expect("old key inside the overlap");
        offer_signed_with(new_key.clone()).await.expect("new key");
        assert_eq!(
            fault_of(offer_signed_with(b"neither".to_vec()).await),
            Fault::InvalidSignature
        );
        let elapsed = Duration::from_millis((now_ms() - rotated_at).max(0) as u64);
        tokio::time::sleep(overlap.saturating_sub(elapsed) + Duration::from_millis(200)).await;
        let late = fault_of(offer_signed_with(signature_key(A)).await);
        assert_eq!(late, Fault::InvalidSignature);
        assert_eq!(late.codes(), (3, 10));
        offer_signed_with(new_key).await.expect("new key after the overlap");
        assert_eq!(
            audit_rows(&h),
            vec![format!("admin-cli:tester|merchant.signing_key_rotated|{A}|-|-")]
        );
        // The trail names the overlap, never a key.
        let detail = h.text("SELECT detail AS v FROM audit_log").unwrap();
        assert!(detail.contains("\"overlap_ms\":3000"), "{detail}");
        assert!(!detail.contains(&BASE64.encode(signature_key(A))), "{detail}");
    }

    async fn a_rotation_without_overlap_stops_the_old_key_at_once(h: Harness) {
        let mut conn = h.pool.get().unwrap();
        rotate_signing_key(
            &mut conn,
            &h.keyring,
            RotateSigningKey {
                merchant_id: B,
                new_key: BASE64.encode(b"fresh"),
                overlap_ms: 0,
                actor: AuditActor::admin_cli("tester"),
                now_ms: now_ms(),
            },
        )
        .unwrap();
        drop(conn);
        h.engine.invalidate_merchant(B);
        assert_eq!(fault_of(h.offer(B, "rot-2").await), Fault::InvalidSignature);
        assert_eq!(
            h.number("SELECT COUNT(*) AS n FROM merchants WHERE id = 452740 AND previous_signature_key IS NULL"),
            1
        );
    }
}

#[test]
fn audit_rows_cannot_be_updated_or_deleted_on_sqlite() {
    let outcome = tamper_with_audit_trail(Backend::Sqlite);
    assert!(!outcome.succeeded, "{}: {}", outcome.name, outcome.evidence);
}

#[test]
fn audit_rows_cannot_be_updated_deleted_or_truncated_on_postgres() {
    let outcome = tamper_with_audit_trail(Backend::Postgres);
    assert!(!outcome.succeeded, "{}: {}", outcome.name, outcome.evidence);
}
