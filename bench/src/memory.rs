//! Memory and growth (issue 5's last two targets).
//!
//! - `--memory`: bulk-seed N customers (default 100k), start oneclick, warm the merchant caches,
//!   read oneclick's RSS and the number of cached customer actors (`active_customers` of the
//!   health reply), touch every customer once with an offer (read-only: loads the customer into
//!   its actor), read both again. RSS growth / actors added = bytes per cached actor (its
//!   snapshot included: one card each). Allocator slack and the growth of buffers count too.
//! - `--actor-sweep 1000000`: the registry's cap (security issue 12, finding 10). One offer each
//!   to N distinct customers never seen before (nothing seeded: each offer still starts a customer
//!   actor, which caches "no such customer"), oneclick at its default `engine.max_actors`. A
//!   sampler reads oneclick's RSS and cached actors (`active_customers`) every 250 ms; the report
//!   gives the peaks, against the uncapped cost (N × the per-actor RSS of `--memory`).
//! - `--growth 1000,1000000`: for each vault size, a fresh database bulk-seeded with that many
//!   customers; offer, token-list and pay-token at the highest `--concurrency` over the same
//!   number of active customers (`--active`, spread evenly over the whole key range), so the only
//!   difference is the size of the tables and indexes behind them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::load::{fmt_int, Measured};
use crate::procfs::rss_kib;
use crate::report::{Bound, Ratio, Record};
use crate::scenario::{judge, offer, signature_key, token_list, Customer, Scenario};
use crate::{load, Env};

/// Sends one read-only request per customer, `concurrency` in flight; returns (seconds, errors).
async fn touch_all(
    env: &Env,
    customers: &Arc<Vec<Customer>>,
    concurrency: usize,
    tag: &str,
) -> anyhow::Result<(f64, u64)> {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let key = signature_key();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let client = env.clients[w % env.clients.len()].clone();
        let (next, done, errors, customers, key, tag) = (
            next.clone(),
            done.clone(),
            errors.clone(),
            customers.clone(),
            key.clone(),
            tag.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(c) = customers.get(i) else { break };
                let req = offer(&key, &format!("{tag}-{i}"), c);
                let kind = req.kind;
                let bad = match client.request(req.subject, req.body).await {
                    Ok(reply) => judge(kind, &reply.payload).is_some(),
                    Err(_) => true,
                };
                if bad {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let n = customers.len();
    let printer = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let d = done.load(Ordering::Relaxed);
                eprintln!(
                    "  touching {d}/{n} customers (offer), {:.0}/s",
                    d as f64 / started.elapsed().as_secs_f64()
                );
            }
        })
    };
    for t in tasks {
        t.await?;
    }
    printer.abort();
    Ok((
        started.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed),
    ))
}

async fn active_customers(env: &Env, app: &crate::stack::OneClick) -> anyhow::Result<i64> {
    Ok(app.health(&env.clients[0]).await?["active_customers"]
        .as_i64()
        .unwrap_or(-1))
}

/// `--memory`: RSS per cached customer actor.
pub async fn memory(env: &mut Env) -> anyhow::Result<(serde_json::Value, Ratio)> {
    let backend = env.args.backend[0];
    let n = env.args.memory_customers;
    eprintln!("== memory: {n} customers on {}", backend.as_str());
    let (db, mut app) = env.prepare(backend, &format!("{}-memory", backend.as_str()))?;
    let seed_started = Instant::now();
    let seeded = crate::bulk_seed(&db.url, &app.keys_file, n).await?;
    let seed_secs = seed_started.elapsed().as_secs_f64();
    app.start(&env.clients[0]).await?;
    let pid = app
        .pid()
        .ok_or_else(|| anyhow::anyhow!("oneclick has no pid"))?;
    // Warm everything that is not a customer actor: merchant cache, credential cache, buffers.
    let warm: Arc<Vec<Customer>> = Arc::new(vec![Customer {
        number: "warm-up".into(),
        token: String::new(),
    }]);
    let key = signature_key();
    for i in 0..200 {
        let _ = env.clients[0]
            .request(
                format!("{}.v1.gw.offer", crate::stack::PREFIX),
                offer(&key, &format!("w{i}"), &warm[0]).body,
            )
            .await;
    }
    let tl = token_list(&warm[0]);
    let _ = env.clients[0].request(tl.subject, tl.body).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss0 = rss_kib(pid).unwrap_or(0);
    let actors0 = active_customers(env, &app).await?;
    let customers = Arc::new(seeded.customers);
    let tag = env.next_tag();
    let (secs, errors) =
        touch_all(env, &customers, env.args.max_concurrency().max(32), &tag).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = rss_kib(pid).unwrap_or(0);
    let actors1 = active_customers(env, &app).await?;
    let added = (actors1 - actors0).max(1) as f64;
    let per_actor_kib = (rss1 as f64 - rss0 as f64) / added;
    app.stop();
    drop(db);
    let value = json!({
        "backend": backend.as_str(),
        "customers": n,
        "bulk_seed_seconds": seed_secs,
        "touch_seconds": secs,
        "touch_rate_per_s": n as f64 / secs.max(1e-9),
        "touch_errors": errors,
        "rss_before_kib": rss0,
        "rss_after_kib": rss1,
        "actors_before": actors0,
        "actors_after": actors1,
        "rss_per_cached_actor_kib": per_actor_kib,
        "rss_per_cached_actor_bytes": per_actor_kib * 1024.0,
    });
    let ratio = Ratio::judged(
        format!("RSS per cached customer actor at {} customers ({})", fmt_int(n as f64), backend.as_str()),
        Some(per_actor_kib),
        "KiB",
        Bound::AtMost(2.0),
        format!(
            "RSS {} → {} KiB, actors {actors0} → {actors1}; first touch (cold, from the vault) {}/s, {errors} errors",
            fmt_int(rss0 as f64),
            fmt_int(rss1 as f64),
            fmt_int(n as f64 / secs.max(1e-9))
        ),
    );
    if errors > 0 {
        anyhow::bail!("memory mode: {errors} touch requests failed");
    }
    Ok((value, ratio))
}

/// `--actor-sweep`: peak RSS and cached actors while N distinct customers pass through.
pub async fn actor_sweep(env: &mut Env) -> anyhow::Result<(serde_json::Value, Ratio)> {
    let backend = env.args.backend[0];
    let n = env.args.actor_sweep;
    eprintln!(
        "== actor sweep: {n} distinct customers on {}",
        backend.as_str()
    );
    let (db, mut app) = env.prepare(backend, &format!("{}-actor-sweep", backend.as_str()))?;
    app.start(&env.clients[0]).await?;
    let pid = app
        .pid()
        .ok_or_else(|| anyhow::anyhow!("oneclick has no pid"))?;
    let warm = Customer {
        number: "warm-up".into(),
        token: String::new(),
    };
    let key = signature_key();
    for i in 0..200 {
        let _ = env.clients[0]
            .request(
                format!("{}.v1.gw.offer", crate::stack::PREFIX),
                offer(&key, &format!("w{i}"), &warm).body,
            )
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = rss_kib(pid).unwrap_or(0);
    let tag = env.next_tag();
    let customers: Arc<Vec<Customer>> = Arc::new(
        (0..n)
            .map(|i| Customer {
                number: format!("sweep-{tag}-{i}"),
                token: String::new(),
            })
            .collect(),
    );
    let peak_rss = Arc::new(AtomicU64::new(rss0));
    let peak_actors = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak_rss, peak_actors) = (peak_rss.clone(), peak_actors.clone());
        let client = env.clients[0].clone();
        let subject = format!("{}.v1.health", crate::stack::PREFIX);
        tokio::spawn(async move {
            loop {
                if let Some(rss) = rss_kib(pid) {
                    peak_rss.fetch_max(rss, Ordering::Relaxed);
                }
                if let Ok(Ok(reply)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    client.request(subject.clone(), "{}".into()),
                )
                .await
                {
                    if let Some(a) = serde_json::from_slice::<serde_json::Value>(&reply.payload)
                        .ok()
                        .and_then(|v| v["active_customers"].as_u64())
                    {
                        peak_actors.fetch_max(a, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let (secs, errors) =
        touch_all(env, &customers, env.args.max_concurrency().max(32), &tag).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    sampler.abort();
    let rss1 = rss_kib(pid).unwrap_or(0);
    let actors1 = active_customers(env, &app).await?;
    app.stop();
    drop(db);
    let peak_rss = peak_rss.load(Ordering::Relaxed).max(rss1);
    let peak_actors = peak_actors
        .load(Ordering::Relaxed)
        .max(actors1.max(0) as u64);
    let peak_mib = peak_rss as f64 / 1024.0;
    let value = json!({
        "backend": backend.as_str(),
        "distinct_customers": n,
        "max_actors": "default (engine.max_actors)",
        "touch_seconds": secs,
        "touch_rate_per_s": n as f64 / secs.max(1e-9),
        "touch_errors": errors,
        "rss_before_kib": rss0,
        "rss_peak_kib": peak_rss,
        "rss_after_kib": rss1,
        "actors_peak": peak_actors,
        "actors_after": actors1,
    });
    let ratio = Ratio::judged(
        format!(
            "peak RSS while {} distinct customers pass through ({})",
            fmt_int(n as f64),
            backend.as_str()
        ),
        Some(peak_mib),
        "MiB",
        Bound::AtMost(512.0),
        format!(
            "RSS {} → peak {} → {} KiB; cached actors peak {peak_actors}, after {actors1}; {}/s, {errors} errors",
            fmt_int(rss0 as f64),
            fmt_int(peak_rss as f64),
            fmt_int(rss1 as f64),
            fmt_int(n as f64 / secs.max(1e-9))
        ),
    );
    if errors > 0 {
        anyhow::bail!("actor sweep: {errors} offers failed");
    }
    Ok((value, ratio))
}

/// `--growth`: the same load against vaults of different sizes.
/// `VACUUM (ANALYZE)` of the seeded tables and a `CHECKPOINT` (PostgreSQL; on SQLite `ANALYZE`
/// and a WAL checkpoint). Each statement on its own: `VACUUM` refuses a multi-statement string.
fn settle(db: &crate::stack::Database) -> anyhow::Result<()> {
    use diesel::connection::SimpleConnection as _;
    let mut conn = db.connect()?;
    let statements: &[&str] = match conn {
        oneclick_actors::vault::AnyConnection::Postgresql(_) => &[
            "VACUUM (ANALYZE) customers",
            "VACUUM (ANALYZE) cards",
            "CHECKPOINT",
        ],
        oneclick_actors::vault::AnyConnection::Sqlite(_) => {
            &["ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)"]
        }
    };
    for sql in statements {
        conn.batch_execute(sql)?;
    }
    Ok(())
}

pub async fn growth(env: &mut Env) -> anyhow::Result<(Vec<Record>, Vec<Ratio>)> {
    let backend = env.args.backend[0];
    let b = backend.as_str();
    let c = env.args.max_concurrency();
    let mut sizes = env.args.growth.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let scenarios = [Scenario::Offer, Scenario::TokenList, Scenario::PayToken];
    let mut records = Vec::new();
    let mut rates: Vec<(usize, Scenario, f64)> = Vec::new();
    for &size in &sizes {
        eprintln!("== growth: vault of {size} customers on {b}");
        let (db, mut app) = env.prepare(backend, &format!("{b}-growth-{size}"))?;
        let started = Instant::now();
        let seeded = crate::bulk_seed(&db.url, &app.keys_file, size).await?;
        env.notes.push(format!(
            "growth {b}: bulk-seeded {size} customers in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        // Let the database finish with the bulk load before measuring: statistics for the
        // planner, hint bits and the visibility map set, the load's WAL checkpointed. Otherwise
        // the large vault is measured against autovacuum and a checkpoint of the load (first
        // run: reads −30 % at 1M with no database work on their path).
        let started = Instant::now();
        match settle(&db) {
            Ok(()) => env.notes.push(format!(
                "growth {b}: vacuum, analyze and checkpoint after seeding {size}: {:.1} s",
                started.elapsed().as_secs_f64()
            )),
            Err(e) => env.notes.push(format!(
                "growth {b}: could not settle the database after seeding: {e}"
            )),
        }
        let active = env.args.active.clamp(1, size);
        let subset: Vec<Customer> = (0..active)
            .map(|i| seeded.customers[i * size / active].clone())
            .collect();
        drop(seeded);
        let subset = Arc::new(subset);
        app.start(&env.clients[0]).await?;
        let probe = env.probe(Some(&app), &db);
        for scenario in scenarios {
            let label = format!("{b} vault={size} {} c={c}", scenario.as_str());
            let makers = env.makers(scenario, &subset, c);
            let m: Measured = load::run_nats(
                &label,
                env.clients_for(c),
                makers,
                env.window(),
                None,
                &probe,
                None,
            )
            .await?;
            rates.push((size, scenario, m.throughput()));
            records.push(Record::new(
                "growth",
                Some(b),
                &format!("{} vault={size}", scenario.as_str()),
                c,
                size,
                &m,
            ));
        }
        app.stop();
        drop(db);
    }
    let mut ratios = Vec::new();
    if let (Some(&small), Some(&large)) = (sizes.first(), sizes.last()) {
        if small != large {
            for scenario in scenarios {
                let at = |s: usize| {
                    rates
                        .iter()
                        .find(|(sz, sc, _)| *sz == s && *sc == scenario)
                        .map(|r| r.2)
                };
                if let (Some(a), Some(z)) = (at(small), at(large)) {
                    let change = (z / a.max(1e-9) - 1.0) * 100.0;
                    // "Within 20 %" of the small vault: being faster is noise, not a miss.
                    ratios.push(Ratio::judged(
                        format!(
                            "{} throughput, {} vs {} customers in the vault ({b}, c={c})",
                            scenario.as_str(),
                            fmt_int(large as f64),
                            fmt_int(small as f64)
                        ),
                        Some(change),
                        "%",
                        Bound::AtLeast(-20.0),
                        format!("{} vs {} requests/s", fmt_int(z), fmt_int(a)),
                    ));
                }
            }
        }
    }
    Ok((records, ratios))
}
