//! Seeding customers through the real commands: each customer's first payment (`gw.pay` with save
//! consent) saves its card, exactly as a payment page would; the reply's token is kept for the
//! pay-with-token and token-list scenarios. Concurrent, with a progress line each second.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::scenario::{pay_new, signature_key, Customer};

/// The customer number of seeded customer `i` (short: R1 allows 32 characters).
pub fn customer_number(i: usize) -> String {
    format!("c{i}")
}

/// Seeds `n` customers with one saved card each, `concurrency` requests in flight.
pub async fn by_commands(
    clients: &[async_nats::Client],
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Customer>> {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let key = signature_key();
    let mut tasks = Vec::new();
    for w in 0..concurrency.max(1) {
        let client = clients[w % clients.len()].clone();
        let (next, done, key) = (next.clone(), done.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let number = customer_number(i);
                let req = pay_new(&key, &format!("seed-{i}"), &number);
                let reply = client.request(req.subject, req.body).await?;
                let v: serde_json::Value = serde_json::from_slice(&reply.payload)?;
                let Some(token) = v["token"].as_str().filter(|_| v["card_saved"] == true) else {
                    bail!("seeding customer {number}: the card was not saved: {v}");
                };
                out.push((
                    i,
                    Customer {
                        number,
                        token: token.to_string(),
                    },
                ));
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(out)
        }));
    }
    let printer = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let d = done.load(Ordering::Relaxed);
                eprintln!(
                    "  seeding {d}/{n} customers through gw.pay (save card), {:.0}/s",
                    d as f64 / started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let mut all = Vec::with_capacity(n);
    let mut failure = None;
    for t in tasks {
        match t.await? {
            Ok(v) => all.extend(v),
            Err(e) => failure = Some(e),
        }
    }
    printer.abort();
    if let Some(e) = failure {
        return Err(e);
    }
    all.sort_by_key(|(i, _)| *i);
    eprintln!(
        "  seeded {n} customers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(all.into_iter().map(|(_, c)| c).collect())
}
