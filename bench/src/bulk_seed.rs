//! Bulk seeding, for vault sizes the real commands would take too long to build (1M customers
//! at the current rate of `gw.pay` would take many minutes) and for the database baseline's
//! scratch database. Bench-only: the service never runs this.
//!
//! Honest rows: each customer gets one card written exactly as the engine's save path writes
//! it (`vault/payments.rs`, `save_card`): the engine's own `Keyring::seal` over the PAN bound to
//! the row's token (`crypto::card_aad`), the engine's keyed `Keyring::fingerprint`, its
//! `Token::generate`, its `NewCardRow` and schema, under the key file the benchmarked oneclick
//! loads, so oneclick decrypts these cards like any other. What it skips is the acquirer and the
//! per-customer actors: rows go in 1,000 customers per transaction.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use diesel::prelude::*;
use oneclick_actors::crypto::{card_aad, Keyring};
use oneclick_actors::domain::{Pan, Token};
use oneclick_actors::vault::rows::NewCardRow;
use oneclick_actors::vault::schema::{cards, customers, merchants};
use oneclick_actors::vault::{AnyConnection, DatabaseUrl};

use crate::scenario::{Customer, CARD};
use crate::stack::MERCHANT_ID;

/// Customers written, with their database ids (for the database baseline).
pub struct Seeded {
    pub customers: Vec<Customer>,
    /// (customer id, card id), in the same order.
    pub ids: Vec<(i64, i64)>,
}

const BATCH: usize = 1000;

/// Writes customers `first..first + n` (numbers from `seed::customer_number`), one card each.
pub fn bulk(
    database_url: &str,
    keys_file: &Path,
    first: usize,
    n: usize,
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    // The key file is wrapped by the KEK beside it (bench/src/stack.rs).
    let kek = oneclick_actors::crypto::LocalKek::load_file(keys_file.with_extension("kek"))?;
    let keyring = Keyring::load_file_with(keys_file, Some(&kek))
        .with_context(|| format!("keys {}", keys_file.display()))?;
    let mut conn = DatabaseUrl::parse(database_url)?.connect()?;
    let union_id: i64 = merchants::table
        .find(MERCHANT_ID)
        .select(merchants::union_id)
        .first(&mut conn)
        .context("the demo merchant")?;
    let pan = Pan::parse(CARD).map_err(|e| anyhow::anyhow!("{e}"))?;
    let fingerprint = keyring.fingerprint(pan.expose().as_bytes());
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = Seeded {
        customers: Vec::with_capacity(n),
        ids: Vec::with_capacity(n),
    };
    let mut last_note = Instant::now();
    let mut start = first;
    while start < first + n {
        let end = (start + BATCH).min(first + n);
        let numbers: Vec<String> = (start..end).map(crate::seed::customer_number).collect();
        conn.transaction::<_, anyhow::Error, _>(|conn| {
            let new_customers: Vec<_> = numbers
                .iter()
                .map(|num| {
                    (
                        customers::union_id.eq(union_id),
                        customers::customer_number.eq(num.as_str()),
                        customers::deny.eq(false),
                        customers::fraud.eq(false),
                        customers::version.eq(1i64),
                        customers::created_at.eq(now),
                    )
                })
                .collect();
            let insert = diesel::insert_into(customers::table).values(&new_customers);
            match conn {
                AnyConnection::Postgresql(c) => insert.execute(c)?,
                AnyConnection::Sqlite(c) => insert.execute(c)?,
            };
            let mut ids: Vec<(i64, String)> = customers::table
                .filter(customers::union_id.eq(union_id))
                .filter(customers::customer_number.eq_any(&numbers))
                .select((customers::id, customers::customer_number))
                .load(conn)?;
            let position: std::collections::HashMap<&str, usize> = numbers
                .iter()
                .enumerate()
                .map(|(i, s)| (s.as_str(), i))
                .collect();
            ids.sort_by_key(|(_, num)| position.get(num.as_str()).copied().unwrap_or(usize::MAX));
            let tokens: Vec<Token> = ids.iter().map(|_| Token::generate()).collect();
            let sealed = tokens
                .iter()
                .map(|t| keyring.seal(pan.expose().as_bytes(), &card_aad(t.as_str())))
                .collect::<Result<Vec<_>, _>>()?;
            let rows: Vec<NewCardRow> = ids
                .iter()
                .zip(&tokens)
                .zip(&sealed)
                .map(|(((cid, _), token), s)| NewCardRow {
                    token: token.as_str(),
                    customer_id: *cid,
                    state: "active",
                    brand: pan.brand().as_str(),
                    bin: pan.bin(),
                    last4: pan.last4(),
                    pan_length: pan.len() as i32,
                    expiry_month: 12,
                    expiry_year: 2030,
                    holder: "IVAN IVANOV",
                    pan_ciphertext: Some(&s.blob),
                    key_version: Some(s.key_version as i32),
                    fingerprint: Some(&fingerprint[..]),
                    saved_by_merchant: MERCHANT_ID,
                    saved_at: now,
                    last_used_at: Some(now),
                    success_count: 1,
                })
                .collect();
            match conn {
                AnyConnection::Postgresql(c) => {
                    diesel::insert_into(cards::table).values(&rows).execute(c)?;
                }
                // SQLite: one statement per row (Diesel's multi-row insert on SQLite refuses
                // rows with optional columns); still one transaction per batch.
                AnyConnection::Sqlite(c) => {
                    for row in &rows {
                        diesel::insert_into(cards::table).values(row).execute(c)?;
                    }
                }
            }
            let token_strs: Vec<&str> = tokens.iter().map(|t| t.as_str()).collect();
            let card_ids: std::collections::HashMap<String, i64> = cards::table
                .filter(cards::token.eq_any(&token_strs))
                .select((cards::token, cards::id))
                .load::<(String, i64)>(conn)?
                .into_iter()
                .collect();
            for ((cid, number), token) in ids.into_iter().zip(tokens) {
                let card_id = card_ids
                    .get(token.as_str())
                    .copied()
                    .context("a card just written is missing")?;
                out.ids.push((cid, card_id));
                out.customers.push(Customer {
                    number,
                    token: token.as_str().to_string(),
                });
            }
            Ok(())
        })?;
        start = end;
        if last_note.elapsed().as_secs_f64() >= 1.0 || start == first + n {
            let done = start - first;
            eprintln!(
                "  bulk seeding {done}/{n} customers, {:.0}/s",
                done as f64 / started.elapsed().as_secs_f64()
            );
            last_note = Instant::now();
        }
    }
    Ok(out)
}
