//! Scenarios 1, 2, 3, 5, 13 and 14: the durable load under a fault.
//!
//! Load: `N` operations over `C` customers chosen Zipf-skewed (s = 1), each customer owned by one
//! generator worker so its operations are issued in order: 80% Token Pay as durable JetStream
//! commands (the merchant's day/week limits make hot customers hit `AS105`), 15% card saves and
//! updates (a registration carries a PAN, so it goes request-reply, R8; half re-save the current
//! number — R11 update — half a new one), 5% deletions as durable `delete_card` commands. Durable
//! commands are published with `Nats-Msg-Id` = command id and re-published with the same id until
//! acknowledged; request-reply calls are retried with the same order number until answered.
//!
//! Faults: `kill-oneclick` (kill -9 the only instance ≥ 15 times), `restart-nats` (kill -9 and
//! clean stop alternately, ≥ 5 times, recovery time measured), `restart-postgres` (a private
//! cluster, `pg_ctl stop -m immediate` ≥ 5 times), `slow-handler` (ack wait 1 s, simulator
//! latency 1.5 s: every command outlives its ack wait), `rolling-restart` (two replicas, SIGTERM
//! and restart each in turn: [`super::rolling_restart`]) and `nats-node-loss` (kill -9 one node
//! of the 3-node cluster: [`super::nats_node_loss`]); these two add the interactive load of
//! [`super::interactive`] (request-reply, never retried, unanswered requests counted). With
//! `--cluster` the stack runs on the shipped 3-node NATS cluster (R3 streams).
//!
//! Then, with the faults stopped and the stream drained, the database and the event stream are
//! read back: lost (acknowledged, no result or no effect), unexpected (an effect never attempted),
//! duplicated (more than one event, or a card's success count / a customer's turnover not matching
//! its orders, or the same number saved twice), per-customer order (events in publish order), and
//! the evidence that the fault happened (faults injected, redeliveries from `/metrics`, publish
//! duplicates, reconnects, retries, dead letters).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::*;
use crate::report::{History, Report};
use crate::stack::{Stack, StackOptions};
use crate::Run;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    KillOneclick,
    RestartNats,
    RestartPostgres,
    SlowHandler,
    NatsNodeLoss,
    RollingRestart,
}

impl Fault {
    /// Scenarios with the interactive load and two replicas.
    fn interactive(self) -> bool {
        matches!(self, Fault::NatsNodeLoss | Fault::RollingRestart)
    }
}

struct Plan {
    ops: usize,
    customers: usize,
    workers: usize,
    /// Target duration of the load (the rate is ops / this).
    seconds: f64,
    min_faults: usize,
    /// Pause between faults, seconds (uniform in the range).
    every: (f64, f64),
    /// Interactive requests per second beside the durable load (rolling-restart, nats-node-loss).
    interactive_rate: f64,
}

fn plan(fault: Fault, short: bool) -> Plan {
    match (fault, short) {
        (Fault::KillOneclick, false) => Plan {
            ops: 10_000,
            customers: 1_000,
            workers: 48,
            seconds: 100.0,
            min_faults: 15,
            every: (3.0, 5.0),
            interactive_rate: 0.0,
        },
        (Fault::KillOneclick, true) => Plan {
            ops: 1_500,
            customers: 150,
            workers: 24,
            seconds: 25.0,
            min_faults: 5,
            every: (3.0, 4.0),
            interactive_rate: 0.0,
        },
        (Fault::RestartNats, false) => Plan {
            ops: 10_000,
            customers: 1_000,
            workers: 48,
            seconds: 100.0,
            min_faults: 5,
            every: (8.0, 12.0),
            interactive_rate: 0.0,
        },
        (Fault::RestartNats, true) => Plan {
            ops: 1_500,
            customers: 150,
            workers: 24,
            seconds: 30.0,
            min_faults: 2,
            every: (7.0, 9.0),
            interactive_rate: 0.0,
        },
        (Fault::RestartPostgres, false) => Plan {
            ops: 10_000,
            customers: 1_000,
            workers: 48,
            seconds: 100.0,
            min_faults: 5,
            every: (8.0, 12.0),
            interactive_rate: 0.0,
        },
        (Fault::RestartPostgres, true) => Plan {
            ops: 1_500,
            customers: 150,
            workers: 24,
            seconds: 30.0,
            min_faults: 2,
            every: (7.0, 9.0),
            interactive_rate: 0.0,
        },
        (Fault::SlowHandler, false) => Plan {
            ops: 500,
            customers: 100,
            workers: 32,
            seconds: 60.0,
            min_faults: 0,
            every: (0.0, 0.0),
            interactive_rate: 0.0,
        },
        (Fault::NatsNodeLoss, false) => Plan {
            ops: 6_000,
            customers: 600,
            workers: 32,
            seconds: 80.0,
            min_faults: 6,
            every: (6.0, 9.0),
            interactive_rate: 1000.0,
        },
        (Fault::NatsNodeLoss, true) => Plan {
            ops: 900,
            customers: 90,
            workers: 16,
            seconds: 22.0,
            min_faults: 2,
            every: (5.0, 6.0),
            interactive_rate: 300.0,
        },
        (Fault::RollingRestart, false) => Plan {
            ops: 6_000,
            customers: 600,
            workers: 32,
            seconds: 80.0,
            min_faults: 8,
            every: (3.0, 5.0),
            interactive_rate: 1000.0,
        },
        (Fault::RollingRestart, true) => Plan {
            ops: 900,
            customers: 90,
            workers: 16,
            seconds: 20.0,
            min_faults: 4,
            every: (1.0, 2.0),
            interactive_rate: 300.0,
        },
        (Fault::SlowHandler, true) => Plan {
            ops: 80,
            customers: 40,
            workers: 16,
            seconds: 10.0,
            min_faults: 0,
            every: (0.0, 0.0),
            interactive_rate: 0.0,
        },
    }
}

/// (global index, customer, kind, amount in minor units, random bits).
type PlannedOp = (usize, usize, Kind, i64, u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TokenPay,
    Save,
    Delete,
}

/// What the generator learnt, shared by its workers.
#[derive(Default)]
struct Ledger {
    /// Durable commands: id → (kind, customer, order number, amount minor).
    attempted: HashMap<String, (Kind, String, Option<String>, i64)>,
    acked: BTreeSet<String>,
    /// Durable command id → the token it names.
    token_of: HashMap<String, String>,
    /// Re-saves of a live card's number answered with another token (R11 says: the same).
    r11_new_token: u64,
    /// Per customer: durable command ids in acknowledgement (= publish) order.
    order: BTreeMap<String, Vec<String>>,
    /// Request-reply saves: order number → reply (None: never answered).
    saves: BTreeMap<String, Option<Value>>,
    publish_attempts: u64,
    publish_duplicates: u64,
    rr_retries: u64,
    unacked: u64,
}

pub async fn run(fault: Fault, run: &Run, report: &mut Report) -> anyhow::Result<()> {
    let p = plan(fault, run.short);
    let history = Arc::new(History::create(&run.out.join("history.jsonl"))?);
    let mut env = vec![
        // A crashed instance's command comes back after the first backoff step.
        ("ONECLICK__NATS__ACK_WAIT_SECS".to_string(), "3".to_string()),
        (
            "ONECLICK__NATS__BACKOFF_MS".into(),
            "[500, 1000, 2000, 3000]".into(),
        ),
        ("ONECLICK__NATS__MAX_DELIVER".into(), "10".into()),
        // Orders orphaned by a kill are settled as Timeout (in doubt) after this long, well
        // inside the ~21 s the deliveries above span (the acquirer below answers in 20 ms).
        ("ONECLICK__ENGINE__IN_DOUBT_AFTER_SECS".into(), "8".into()),
        ("ONECLICK__DATABASE__POOL_SIZE".into(), "8".into()),
        // An acquirer that takes a little time, as a real one does: commands are in flight when
        // the fault strikes (with an instant simulator a kill almost never catches one).
        (
            "ONECLICK__ACQUIRER__SIMULATOR_LATENCY_MS".into(),
            "20".into(),
        ),
    ];
    if fault == Fault::SlowHandler {
        env = vec![
            ("ONECLICK__NATS__ACK_WAIT_SECS".to_string(), "1".to_string()),
            (
                "ONECLICK__ACQUIRER__SIMULATOR_LATENCY_MS".into(),
                "1500".into(),
            ),
        ];
    }
    let stack = Arc::new(
        Stack::start(
            &run.out,
            StackOptions {
                instances: if fault.interactive() { 2 } else { 1 },
                cluster: run.cluster || fault == Fault::NatsNodeLoss,
                private_pg: fault == Fault::RestartPostgres,
                env,
            },
            |app| {
                app.admin(&[
                    "merchant",
                    "--id",
                    &DEMO_MERCHANT.to_string(),
                    "--limit",
                    "RUB:300.00:1000.00",
                ])?;
                Ok(())
            },
        )
        .await?,
    );
    report.figure("fault", format!("{fault:?}"));
    report.figure(
        "NATS",
        if run.cluster || fault == Fault::NatsNodeLoss {
            "3-node cluster (deploy/nats/cluster), streams R3"
        } else {
            "one nats-server"
        },
    );
    if let Some(pg) = &stack.pg {
        report.figure(
            "private PostgreSQL",
            pg.lock().map(|p| p.version()).unwrap_or_default(),
        );
    }
    report.figure("operations planned", p.ops as i64);
    if fault.interactive() {
        report.figure(
            "interactive rate planned (requests/s)",
            run.interactive_rate.unwrap_or(p.interactive_rate),
        );
    }
    report.figure("customers", p.customers as i64);

    // Setup: one saved card per customer (request-reply registrations).
    let register = stack.subject("gw.register");
    // Per customer: its live cards (token, number), the current one last.
    let mut tokens: Vec<Vec<(String, String)>> = vec![Vec::new(); p.customers];
    let mut pan_seq = 0u64;
    let setup: Vec<(usize, Option<Value>)> = futures::future::join_all((0..p.customers).map(|c| {
        let pan = test_pan("4", 5_000_000 + c as u64 * 1009);
        let body = merge(
            order_of(DEMO_MERCHANT, &format!("init-{c}"), "0", &format!("dc-{c}")),
            json!({"card": card(&pan, "123", 12)}),
        );
        let (client, register) = (stack.client.clone(), register.clone());
        async move {
            (
                c,
                request_until_answered(&client, &register, &body, Duration::from_secs(60))
                    .await
                    .0,
            )
        }
    }))
    .await;
    for (c, reply) in setup {
        let token = reply
            .as_ref()
            .and_then(|r| r["token"].as_str())
            .ok_or_else(|| anyhow::anyhow!("setup save of dc-{c}: {reply:?}"))?;
        tokens[c].push((
            token.to_string(),
            test_pan("4", 5_000_000 + c as u64 * 1009),
        ));
    }
    pan_seq += p.customers as u64;
    // The interactive load's customers, one saved card each (rolling-restart, nats-node-loss).
    let interactive_customers = if fault.interactive() {
        p.customers / 3
    } else {
        0
    };
    let interactive_cards = super::interactive::setup(&stack, interactive_customers).await?;

    // The plan of operations, deterministic from the seed.
    let mut rng = Rng::new(run.seed);
    let zipf = Zipf::new(p.customers, 1.0);
    let mut per_worker: Vec<Vec<PlannedOp>> = vec![Vec::new(); p.workers];
    for k in 0..p.ops {
        let c = zipf.sample(&mut rng);
        let x = rng.unit();
        let kind = if x < 0.80 {
            Kind::TokenPay
        } else if x < 0.95 {
            Kind::Save
        } else {
            Kind::Delete
        };
        let mut cents = 100 + rng.below(5_900) as i64;
        if cents % 100 == 13 || cents % 100 == 51 {
            cents += 1;
        }
        let extra = rng.next_u64();
        per_worker[c % p.workers].push((k, c, kind, cents, extra));
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let tokens = Arc::new(Mutex::new(tokens));
    let load_done = Arc::new(AtomicBool::new(false));
    let scrape_stop = Arc::new(AtomicBool::new(false));
    let scraper = stack.spawn_scraper(scrape_stop.clone(), Duration::from_millis(200));
    let began = Instant::now();
    let rate = p.ops as f64 / p.seconds;

    // Result events as they arrive (a core subscription: it follows the client's reconnects),
    // to measure how long after each restart every partition delivers again.
    let live: Arc<Mutex<Vec<(Instant, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut events_sub = stack
        .client
        .subscribe(stack.subject("evt.>"))
        .await
        .map_err(|e| anyhow::anyhow!("subscribe: {e}"))?;
    let live_task = {
        let live = live.clone();
        tokio::spawn(async move {
            use futures::StreamExt as _;
            while let Some(m) = events_sub.next().await {
                if let Some(id) = serde_json::from_slice::<Value>(&m.payload)
                    .ok()
                    .and_then(|v| v["command_id"].as_str().map(str::to_string))
                {
                    if let Ok(mut l) = live.lock() {
                        l.push((Instant::now(), id));
                    }
                }
            }
        })
    };

    let interactive = fault.interactive().then(|| {
        super::interactive::Interactive::start(
            stack.clone(),
            history.clone(),
            interactive_cards,
            16,
            run.interactive_rate.unwrap_or(p.interactive_rate),
            run.seed ^ 0x1a7e,
        )
    });

    // The fault injector.
    let injector = {
        let (stack, history, load_done) = (stack.clone(), history.clone(), load_done.clone());
        let (min, every) = (p.min_faults, p.every);
        let seed = run.seed ^ 0x5eed;
        tokio::spawn(
            async move { inject(fault, stack, history, load_done, min, every, seed).await },
        )
    };

    // The load.
    let workers = per_worker.into_iter().enumerate().map(|(w, ops)| {
        let (stack, ledger, tokens, history) = (stack.clone(), ledger.clone(), tokens.clone(), history.clone());
        let pan_base = pan_seq + w as u64 * 100_000;
        async move {
            let mut pan_n = 0u64;
            for (k, c, mut kind, cents, extra) in ops {
                let due = began + Duration::from_secs_f64(k as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let customer = format!("dc-{c}");
                let current = tokens.lock().ok().and_then(|t| t[c].last().cloned());
                let (current, current_pan) = (current.as_ref().map(|x| x.0.clone()), current.map(|x| x.1));
                if current.is_none() && kind != Kind::Save {
                    kind = Kind::Save;
                }
                match kind {
                    Kind::Save => {
                        // Half re-save the current card's number (R11: same token, new expiry), half
                        // a new card. Never the number of a card with a deletion in flight: the
                        // deletion is durable and may apply after this request-reply save.
                        let resave = extra % 2 == 0 && current.is_some();
                        let pan = if let (true, Some(p)) = (resave, current_pan.clone()) {
                            p
                        } else {
                            pan_n += 1;
                            test_pan("5", 3_000_000 + (pan_base + pan_n) * 7)
                        };
                        let order_no = format!("s-{k}");
                        let body = merge(order_of(DEMO_MERCHANT, &order_no, "0", &customer), json!({"card": card(&pan, "123", 1 + (extra % 12) as u32)}));
                        history.record(json!({"op": "register", "order": order_no, "customer": customer}));
                        let (reply, retries) = request_until_answered(&stack.client, &stack.subject("gw.register"), &body, Duration::from_secs(180)).await;
                        history.record(json!({"ack": "register", "order": order_no, "retries": retries, "token": reply.as_ref().map(|r| r["token"].clone()), "state": reply.as_ref().map(|r| r["order_state"].clone())}));
                        let saved = reply.as_ref().filter(|r| r["card_saved"] == true).and_then(|r| r["token"].as_str());
                        if let Some(t) = saved {
                            if let Ok(mut all) = tokens.lock() {
                                all[c].retain(|x| x.0 != t);
                                all[c].push((t.to_string(), pan.clone()));
                            }
                        }
                        if let Ok(mut l) = ledger.lock() {
                            if resave && saved.is_some() && saved != current.as_deref() {
                                l.r11_new_token += 1;
                            }
                            l.rr_retries += retries;
                            l.saves.insert(order_no, reply);
                        }
                    }
                    Kind::TokenPay | Kind::Delete => {
                        let token = current.unwrap_or_default();
                        let id = format!("c-{k}");
                        let (cmd, order_no) = if kind == Kind::TokenPay {
                            let order_no = format!("tp-{k}");
                            let amount = format!("{}.{:02}", cents / 100, cents % 100);
                            (json!({"command_id": id, "kind": "token_pay", "merchant_id": DEMO_MERCHANT, "order_number": order_no, "order_amount": amount,
                                    "order_currency": "RUB", "customer_number": customer, "token": token}), Some(order_no))
                        } else {
                            if let Ok(mut all) = tokens.lock() {
                                all[c].retain(|x| x.0 != token);
                            }
                            (json!({"command_id": id, "kind": "delete_card", "merchant_id": DEMO_MERCHANT, "customer_number": customer, "token": token}), None)
                        };
                        let Ok(subject) = command_subject(&stack.prefix, &cmd) else { continue };
                        if let Ok(mut l) = ledger.lock() {
                            l.attempted.insert(id.clone(), (kind, customer.clone(), order_no.clone(), cents));
                            l.token_of.insert(id.clone(), token.clone());
                        }
                        history.record(json!({"op": "publish", "id": id, "kind": cmd["kind"], "customer": customer, "order": order_no, "amount_minor": if kind == Kind::TokenPay { cents } else { 0 }}));
                        let published = publish_until_acked(&stack.js, &subject, &id, &serde_json::to_vec(&cmd).unwrap_or_default(), Duration::from_secs(300)).await;
                        history.record(json!({"ack": "publish", "id": id, "acked": published.acked, "attempts": published.attempts, "duplicate": published.duplicate, "seq": published.stream_sequence}));
                        if let Ok(mut l) = ledger.lock() {
                            l.publish_attempts += published.attempts;
                            if published.duplicate {
                                l.publish_duplicates += 1;
                            }
                            if published.acked {
                                l.acked.insert(id.clone());
                                l.order.entry(customer).or_default().push(id);
                            } else {
                                l.unacked += 1;
                            }
                        }
                    }
                }
            }
        }
    });
    futures::future::join_all(workers).await;
    let load_seconds = began.elapsed().as_secs_f64();
    load_done.store(true, Ordering::Relaxed);
    let injected = injector
        .await
        .map_err(|e| anyhow::anyhow!("injector: {e}"))??;
    // The interactive load ran until the last fault was over; its last requests are answered or
    // time out now.
    let interactive = match interactive {
        Some(i) => Some(i.stop().await),
        None => None,
    };
    history.record(json!({"phase": "load done", "seconds": load_seconds}));

    // Drain: the work queue empties and every acknowledged command has its event.
    let acked: BTreeSet<String> = ledger.lock().map(|l| l.acked.clone()).unwrap_or_default();
    let drain_began = Instant::now();
    let mut events = Vec::new();
    // Done when every acknowledged command has its result event. (Messages may stay in the work
    // queue after a kill -9 of nats-server although every consumer acknowledged them: reported
    // as "commands still in the stream", see docs/reliability.md.)
    while drain_began.elapsed()
        < Duration::from_secs(if fault == Fault::SlowHandler {
            600
        } else if run.short {
            60
        } else {
            240
        })
    {
        events = read_events(&stack.js, &stack.prefix)
            .await
            .unwrap_or_default();
        let seen: BTreeSet<&str> = events
            .iter()
            .filter_map(|(_, e)| e["command_id"].as_str())
            .collect();
        if acked.iter().all(|id| seen.contains(id.as_str())) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let pending = pending_commands(&stack.js, &stack.prefix).await;
    let drain_seconds = drain_began.elapsed().as_secs_f64();
    if pending != Some(0) {
        let stuck = consumer_states(&stack).await;
        report.note(format!(
            "commands left in the stream after the drain; consumers: {stuck}"
        ));
        history.record(json!({"stuck": stuck}));
    }
    live_task.abort();
    stack.scrape();
    scrape_stop.store(true, Ordering::Relaxed);
    let _ = scraper.join();
    history.flush();

    // Read back.
    let ledger = Arc::try_unwrap(ledger)
        .map_err(|_| anyhow::anyhow!("ledger still shared"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("ledger poisoned"))?;
    let mut sql = stack.sql()?;
    let orders: HashMap<String, (String, i64, String, bool, String)> = sql
        .rows("SELECT concat_ws(E'\\t', o.order_number, o.state, o.amount, COALESCE(k.token, '-'), o.counts_for_limits, COALESCE(c.customer_number, '-')) AS v \
               FROM orders o LEFT JOIN cards k ON k.id = o.card_id LEFT JOIN customers c ON c.id = o.customer_id")?
        .into_iter()
        .map(|r| (r[0].clone(), (r[1].clone(), r[2].parse().unwrap_or(0), r[3].clone(), r[4] == "t" || r[4] == "true", r[5].clone())))
        .collect();
    let processed: BTreeMap<String, String> = sql
        .rows("SELECT concat_ws(E'\\t', command_id, kind) AS v FROM processed_commands")?
        .into_iter()
        .map(|r| (r[0].clone(), r.get(1).cloned().unwrap_or_default()))
        .collect();
    let card_states: HashMap<String, String> = sql
        .rows("SELECT concat_ws(E'\\t', token, state) AS v FROM cards")?
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let success_mismatch = sql.number(
        "SELECT CAST(COUNT(*) AS TEXT) AS v FROM cards k WHERE k.success_count <> \
         (SELECT COUNT(*) FROM orders o WHERE o.card_id = k.id AND o.state = 'Approved')",
    )?;
    let twice_saved = sql.number(
        "SELECT CAST(COUNT(*) AS TEXT) AS v FROM (SELECT customer_id, fingerprint FROM cards WHERE state <> 'deleted' AND fingerprint IS NOT NULL \
         GROUP BY customer_id, fingerprint HAVING COUNT(*) > 1) t",
    )?;

    // Events per command id, in stream order.
    let mut event_of: HashMap<String, Vec<(u64, Value)>> = HashMap::new();
    let mut dead_letters = 0i64;
    for (seq, e) in &events {
        if e.get("deliveries").is_some() {
            dead_letters += 1;
        }
        if let Some(id) = e["command_id"].as_str() {
            event_of
                .entry(id.to_string())
                .or_default()
                .push((*seq, e.clone()));
        }
    }
    let mut lost = 0i64;
    let mut mismatched = 0i64;
    let mut duplicated_events = 0i64;
    let mut fault_events = 0i64;
    let mut in_process = 0i64;
    let mut faults_by_code: BTreeMap<String, i64> = BTreeMap::new();
    let mut faults_by_id: Vec<(String, String)> = Vec::new();
    let mut turnover_expected: HashMap<String, i64> = HashMap::new();
    let mut lost_ids = Vec::new();
    let mut mismatched_ids: Vec<Value> = Vec::new();
    for id in &acked {
        let Some((kind, customer, order_no, cents)) = ledger.attempted.get(id) else {
            continue;
        };
        let evs = event_of.get(id).cloned().unwrap_or_default();
        let results: Vec<&Value> = evs
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e.get("deliveries").is_none())
            .collect();
        if results.len() > 1 {
            duplicated_events += 1;
        }
        let Some(e) = results.first() else {
            lost += 1;
            lost_ids.push(id.clone());
            continue;
        };
        if e["ok"] != true {
            fault_events += 1;
            *faults_by_code
                .entry(format!(
                    "{}/{} {} ({:?})",
                    e["fault"]["faultcode"],
                    e["fault"]["faultstring"],
                    e["fault"]["detail"].as_str().unwrap_or(""),
                    kind
                ))
                .or_default() += 1;
            history.record(json!({"fault_event": id, "event": e}));
            faults_by_id.push((
                id.clone(),
                format!("{}/{}", e["fault"]["faultcode"], e["fault"]["faultstring"]),
            ));
            continue;
        }
        match kind {
            Kind::TokenPay => {
                let order_no = order_no.clone().unwrap_or_default();
                match orders.get(&order_no) {
                    None => {
                        lost += 1;
                        lost_ids.push(id.clone());
                    }
                    Some((state, amount, _, _, _)) => {
                        let result_state = e["result"]["order_state"].as_str().unwrap_or("");
                        if state != result_state || *amount != *cents {
                            mismatched += 1;
                            mismatched_ids.push(json!({"command": id, "order": order_no, "database": [state, amount],
                                "event": [result_state, cents], "events": evs.len()}));
                        }
                        // R12: approved and in-doubt amounts count, declined ones are released.
                        // "In Process" is in doubt too: the acquirer answered but recording the
                        // answer failed (the database went away), the reservation stays.
                        if result_state == "In Process" {
                            in_process += 1;
                        }
                        if result_state == "Approved"
                            || result_state == "Timeout"
                            || result_state == "In Process"
                        {
                            *turnover_expected.entry(customer.clone()).or_default() += *cents;
                        }
                    }
                }
            }
            Kind::Delete => {
                let token = e["result"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .split(' ')
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                if !processed.contains_key(id)
                    || card_states.get(&token).map(|s| s.as_str()) != Some("deleted")
                {
                    lost += 1;
                    lost_ids.push(id.clone());
                }
            }
            Kind::Save => {}
        }
    }
    // Request-reply saves: each answered save is in the database with its answer.
    let mut saves_answered = 0i64;
    let mut saves_unanswered = 0i64;
    let mut lost_saves = 0i64;
    for (order_no, reply) in &ledger.saves {
        match reply {
            None => saves_unanswered += 1,
            Some(r) => {
                saves_answered += 1;
                // A save the client was told about must have its card (R5).
                if r["card_saved"] == true
                    && !r["token"]
                        .as_str()
                        .is_some_and(|t| card_states.contains_key(t))
                {
                    lost_saves += 1;
                    lost_ids.push(format!("{order_no} (card {})", r["token"]));
                }
                match orders.get(order_no) {
                    None if !is_fault(r) => {
                        lost += 1;
                        lost_ids.push(order_no.clone());
                    }
                    Some((state, ..)) if state != r["order_state"].as_str().unwrap_or("") => {
                        mismatched += 1;
                        mismatched_ids
                            .push(json!({"save": order_no, "database": state, "reply": r}));
                    }
                    _ => {}
                }
            }
        }
    }
    // Unexpected: effects nobody attempted.
    let attempted_orders: BTreeSet<String> = ledger
        .attempted
        .values()
        .filter_map(|(_, _, o, _)| o.clone())
        .chain(ledger.saves.keys().cloned())
        .chain((0..p.customers).map(|c| format!("init-{c}")))
        .chain(super::interactive::setup_orders(interactive_customers))
        .chain(
            interactive
                .as_ref()
                .and_then(|t| t.orders.lock().ok().map(|o| o.clone()))
                .unwrap_or_default(),
        )
        .collect();
    let unexpected_orders = orders
        .keys()
        .filter(|o| !attempted_orders.contains(*o))
        .count() as i64;
    let unexpected_commands = processed
        .keys()
        .filter(|id| !ledger.attempted.contains_key(*id))
        .count() as i64;
    // Turnover: what counts for the limits in the database = the counted orders of the results.
    let mut turnover_db: HashMap<String, i64> = HashMap::new();
    for (order_no, (_, amount, _, counts, customer)) in &orders {
        if *counts && order_no.starts_with("tp-") {
            *turnover_db.entry(customer.clone()).or_default() += amount;
        }
    }
    let turnover_off = turnover_db
        .iter()
        .filter(|(c, v)| turnover_expected.get(*c) != Some(v))
        .count() as i64
        + turnover_expected
            .iter()
            .filter(|(c, _)| !turnover_db.contains_key(*c))
            .count() as i64;
    // Per-customer order: the events of a customer's commands in the order they were published.
    let position: HashMap<&str, u64> = event_of
        .iter()
        .filter_map(|(id, evs)| Some((id.as_str(), evs.first()?.0)))
        .collect();
    let mut out_of_order = 0i64;
    for ids in ledger.order.values() {
        let seqs: Vec<u64> = ids
            .iter()
            .filter_map(|id| position.get(id.as_str()).copied())
            .collect();
        if seqs.windows(2).any(|w| w[0] > w[1]) {
            out_of_order += 1;
        }
    }
    let approved = orders
        .iter()
        .filter(|(o, v)| o.starts_with("tp-") && v.0 == "Approved")
        .count() as i64;
    let limit_declines = orders
        .iter()
        .filter(|(o, _)| o.starts_with("tp-"))
        .filter(|(_, v)| v.0 == "Declined")
        .count() as i64;
    let redeliveries = stack.counter("oneclick_jetstream_redeliveries_total") as i64;
    // Details for a failed check: what was lost, which turnovers differ, and the tokens of the
    // commands refused as unknown (does the card exist, in which state).
    let turnover_details: Vec<Value> = turnover_db
        .iter()
        .map(|(c, v)| (c.clone(), *v, turnover_expected.get(c).copied()))
        .chain(turnover_expected.iter().filter(|(c, _)| !turnover_db.contains_key(*c)).map(|(c, v)| (c.clone(), 0, Some(*v))))
        .filter(|(_, db, exp)| Some(*db) != *exp)
        .map(|(c, db, exp)| {
            let rows: Vec<Value> = orders
                .iter()
                .filter(|(o, v)| o.starts_with("tp-") && v.4 == c)
                .map(|(o, v)| json!({"order": o, "state": v.0, "amount": v.1, "counts": v.3, "event": event_of.get(&format!("c-{}", &o[3..])).and_then(|e| e.first()).map(|e| e.1["result"]["order_state"].clone())}))
                .filter(|r| r["counts"] == true || r["event"] == "Approved" || r["event"] == "Timeout" || r["event"] == "In Process")
                .collect();
            json!({"customer": c, "database": db, "expected_from_results": exp, "orders": rows})
        })
        .collect();
    let refused_tokens: Vec<Value> = faults_by_id
        .iter()
        .map(|(id, code)| {
            let token = ledger.token_of.get(id).cloned().unwrap_or_default();
            let save = ledger.saves.iter().find(|(_, r)| r.as_ref().is_some_and(|r| r["token"] == json!(token))).map(|(o, r)| json!({"order": o, "reply": r}));
            json!({"command": id, "fault": code, "token": token, "card_state": card_states.get(&token), "saved_by": save})
        })
        .collect();
    std::fs::write(
        run.out.join("details.json"),
        serde_json::to_vec_pretty(
            &json!({"lost": lost_ids, "results_differing": mismatched_ids, "turnover_differs": turnover_details, "fault_events": refused_tokens}),
        )?,
    )?;

    // Command flow after each restart: until every partition published a result again.
    let partition_of = |id: &str| {
        ledger.attempted.get(id).map(|(_, customer, _, _)| {
            oneclick::subjects::partition(
                &oneclick::subjects::customer_partition_key(customer),
                oneclick::subjects::DEFAULT_PARTITIONS,
            )
        })
    };
    let arrivals = live.lock().map(|l| l.clone()).unwrap_or_default();
    let mut flow: Vec<f64> = injected
        .restarted_at
        .iter()
        .map(|t| {
            (0..oneclick::subjects::DEFAULT_PARTITIONS)
                .filter_map(|p| {
                    arrivals
                        .iter()
                        .find(|(at, id)| at > t && partition_of(id) == Some(p))
                        .map(|(at, _)| at.duration_since(*t).as_secs_f64())
                })
                .fold(0.0, f64::max)
        })
        .collect();
    flow.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if !flow.is_empty() {
        let q = |x: f64| flow[((flow.len() as f64 - 1.0) * x).round() as usize];
        report.figure(
            "time until every partition delivers again p50 / max (s)",
            format!("{:.2} / {:.2}", q(0.5), q(1.0)),
        );
    }
    report.figure("load seconds", (load_seconds * 10.0).round() / 10.0);
    report.figure("drain seconds", (drain_seconds * 10.0).round() / 10.0);
    report.figure("durable commands attempted", ledger.attempted.len() as i64);
    report.figure("durable commands acknowledged", acked.len() as i64);
    report.figure("request-reply saves answered", saves_answered);
    report.figure("token pays approved", approved);
    report.figure("token pays declined (limits)", limit_declines);
    report.figure(
        "fault events (permanent faults, e.g. deleted token)",
        fault_events,
    );
    for (k, v) in &faults_by_code {
        report.figure(&format!("  {k}"), *v);
    }
    for (k, v) in &injected.figures {
        report.figure(k, v.clone());
    }
    report.figure("redeliveries (oneclick /metrics)", redeliveries);
    report.figure("dead letters", dead_letters);
    report.figure("publish attempts", ledger.publish_attempts as i64);
    report.figure(
        "publish retries",
        ledger.publish_attempts as i64 - ledger.attempted.len() as i64,
    );
    report.figure(
        "publish duplicates detected by the stream",
        ledger.publish_duplicates as i64,
    );
    report.figure("request-reply retries", ledger.rr_retries as i64);
    report.figure(
        "client disconnects",
        stack.client_events.disconnects.load(Ordering::Relaxed) as i64,
    );
    report.figure(
        "client (re)connects",
        stack.client_events.reconnects.load(Ordering::Relaxed) as i64,
    );
    report.figure(
        "commands still in the stream",
        pending.map(|n| n as i64).unwrap_or(-1),
    );
    if let Some(t) = &interactive {
        let unanswered = t.unanswered.lock().map(|u| u.clone()).unwrap_or_default();
        report.figure(
            "interactive requests sent (Token Pay, request-reply, never retried)",
            t.sent.load(Ordering::Relaxed) as i64,
        );
        report.figure(
            "interactive requests answered",
            t.answered.load(Ordering::Relaxed) as i64,
        );
        report.figure(
            "interactive answers that are retryable faults (9/2, 9/3, 9/4)",
            t.retryable_faults.load(Ordering::Relaxed) as i64,
        );
        report.figure("interactive requests unanswered", unanswered.len() as i64);
        for u in unanswered.iter().take(20) {
            report.note(format!(
                "unanswered: order {} sent at {} ms ({}), given up at {} ms",
                u["unanswered"].as_str().unwrap_or("?"),
                u["sent_ms"],
                u["error"].as_str().unwrap_or("?"),
                u["given_up_ms"]
            ));
        }
        if fault == Fault::RollingRestart {
            report.expect_eq(
                "interactive requests without an answer",
                unanswered.len() as i64,
                0,
            );
            report.expect_eq(
                "request-reply saves retried (a save timed out or got 9/x)",
                ledger.rr_retries as i64,
                0,
            );
            for (k, v) in super::rolling_restart::stop_evidence(&run.out) {
                report.figure(&k, v);
            }
        }
    }
    report.expect_eq("lost (acknowledged, not applied)", lost, 0);
    report.expect_eq(
        "lost saves (answered card_saved, card not in the database)",
        lost_saves,
        0,
    );
    report.expect_eq(
        "unexpected (applied, never attempted)",
        unexpected_orders + unexpected_commands,
        0,
    );
    report.expect_eq("duplicated events", duplicated_events, 0);
    report.expect_eq(
        "duplicated card charges (success_count ≠ approved orders)",
        success_mismatch,
        0,
    );
    report.expect_eq("duplicated saved cards (same number twice)", twice_saved, 0);
    report.expect_eq(
        "customers whose turnover ≠ their counted payments",
        turnover_off,
        0,
    );
    report.expect_eq("results differing from the database", mismatched, 0);
    // An order whose attempt died between its reservation and the recording of the acquirer's
    // answer is replayed as "In Process" (AS300) and acknowledged: in doubt, reserved, never
    // resolved (docs/reliability.md, findings).
    report.expect_eq(
        "token pays acknowledged In Process and never resolved",
        in_process,
        0,
    );
    report.expect_eq(
        "customers with events out of publish order",
        out_of_order,
        0,
    );
    report.expect_eq(
        "commands never acknowledged by the stream",
        ledger.unacked as i64,
        0,
    );
    report.expect_eq("saves never answered", saves_unanswered, 0);
    report.expect_eq(
        "re-saves of a saved number given a new token (R11)",
        ledger.r11_new_token as i64,
        0,
    );
    report.expect_eq("dead letters", dead_letters, 0);
    if p.min_faults > 0 {
        report.expect_at_least(
            "faults injected",
            injected.count as i64,
            p.min_faults as i64,
        );
    }
    match fault {
        Fault::KillOneclick | Fault::SlowHandler => {
            if redeliveries == 0 {
                report.note("ZERO redeliveries: this run tested nothing (no command was in flight at a kill / past its ack wait)");
            }
            report.expect_at_least("redeliveries (evidence)", redeliveries, 1);
        }
        Fault::RestartNats => report.expect_at_least(
            "client reconnects (evidence)",
            stack.client_events.disconnects.load(Ordering::Relaxed) as i64,
            1,
        ),
        Fault::RestartPostgres => report.expect_at_least(
            "retries (evidence)",
            ledger.rr_retries as i64
                + redeliveries
                + (ledger.publish_attempts as i64 - ledger.attempted.len() as i64),
            1,
        ),
        Fault::NatsNodeLoss => report.expect_at_least(
            "kills of the command stream's leader (evidence)",
            injected
                .figures
                .iter()
                .find(|(k, _)| k.contains("(stream leader)"))
                .and_then(|(_, v)| v.as_i64())
                .unwrap_or(0),
            1,
        ),
        Fault::RollingRestart => {
            let per_replica = |i: usize| {
                injected
                    .figures
                    .iter()
                    .find(|(k, _)| k.ends_with(&format!("oneclick-{i}")))
                    .and_then(|(_, v)| v.as_i64())
                    .unwrap_or(0)
            };
            report.expect_at_least(
                "SIGTERMs of the replica restarted least often (evidence)",
                per_replica(0).min(per_replica(1)),
                1,
            )
        }
    }
    Ok(())
}

struct Injected {
    count: usize,
    figures: Vec<(String, Value)>,
    /// When each restarted server was up again.
    restarted_at: Vec<Instant>,
}

/// Injects `fault` until the load is done and at least `min` faults were injected; leaves every
/// server running.
async fn inject(
    fault: Fault,
    stack: Arc<Stack>,
    history: Arc<History>,
    load_done: Arc<AtomicBool>,
    min: usize,
    every: (f64, f64),
    seed: u64,
) -> anyhow::Result<Injected> {
    let mut rng = Rng::new(seed);
    let mut count = 0usize;
    let mut restarted_at = Vec::new();
    let mut recoveries: Vec<f64> = Vec::new();
    let mut kinds: BTreeMap<&'static str, i64> = BTreeMap::new();
    if fault == Fault::SlowHandler {
        return Ok(Injected {
            count: 0,
            figures: vec![(
                "faults injected".into(),
                json!("none (configuration: ack wait 1 s, acquirer 1.5 s)"),
            )],
            restarted_at: Vec::new(),
        });
    }
    let restarts_done = Arc::new(AtomicU64::new(0));
    while !(load_done.load(Ordering::Relaxed) && count >= min) {
        let pause = every.0 + rng.unit() * (every.1 - every.0);
        let until = Instant::now() + Duration::from_secs_f64(pause);
        while Instant::now() < until && !(load_done.load(Ordering::Relaxed) && count >= min) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if load_done.load(Ordering::Relaxed) && count >= min {
            break;
        }
        let down = Duration::from_secs_f64(0.2 + rng.unit() * 1.3);
        let clean = count % 2 == 1;
        let s = stack.clone();
        let t0 = Instant::now();
        let what = match fault {
            Fault::KillOneclick => {
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let mut apps = s.apps.lock().map_err(|_| anyhow::anyhow!("lock"))?;
                    apps[0].scrape();
                    apps[0].kill9();
                    drop(apps);
                    std::thread::sleep(down);
                    s.apps.lock().map_err(|_| anyhow::anyhow!("lock"))?[0].start()?;
                    Ok(())
                })
                .await??;
                "kill -9 oneclick"
            }
            Fault::RestartNats => {
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let mut backbone = s.nats.lock().map_err(|_| anyhow::anyhow!("lock"))?;
                    let nats = backbone.single()?;
                    if clean {
                        nats.stop();
                    } else {
                        nats.kill9();
                    }
                    std::thread::sleep(down);
                    nats.spawn()
                })
                .await??;
                if clean {
                    "clean stop nats-server"
                } else {
                    "kill -9 nats-server"
                }
            }
            Fault::RestartPostgres => {
                let pg =
                    s.pg.clone()
                        .ok_or_else(|| anyhow::anyhow!("no private PostgreSQL"))?;
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let mut pg = pg.lock().map_err(|_| anyhow::anyhow!("lock"))?;
                    pg.stop_immediate()?;
                    std::thread::sleep(down);
                    pg.start()
                })
                .await??;
                "immediate stop postgres"
            }
            Fault::NatsNodeLoss => {
                super::nats_node_loss::kill_one(&stack, &history, count, down + down).await?
            }
            Fault::RollingRestart => {
                super::rolling_restart::restart_one(&stack, &history, count).await?
            }
            Fault::SlowHandler => unreachable!("returned above"),
        };
        let restarted = t0.elapsed();
        restarted_at.push(Instant::now());
        count += 1;
        *kinds.entry(what).or_default() += 1;
        restarts_done.fetch_add(1, Ordering::Relaxed);
        history.record(json!({"fault": what, "n": count, "down_ms": down.as_millis() as u64, "restart_ms": restarted.as_millis() as u64}));
        // Recovery: oneclick answers health over NATS with the vault up, and JetStream answers.
        let back = Instant::now();
        loop {
            let health = request(
                &stack.client,
                &stack.subject("health"),
                &json!({}),
                Duration::from_millis(500),
            )
            .await;
            let js_ok = pending_commands(&stack.js, &stack.prefix).await.is_some();
            if js_ok && health.as_ref().is_ok_and(|h| h["status"] == "ok") {
                break;
            }
            if back.elapsed() > Duration::from_secs(120) {
                history.record(json!({"recovered": false, "n": count}));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // From the moment the server was started again to the service answering.
        let recovery =
            back.elapsed().as_secs_f64() + (restarted.as_secs_f64() - down.as_secs_f64()).max(0.0);
        recoveries.push(recovery);
        history.record(
            json!({"recovered": true, "n": count, "recovery_ms": (recovery * 1000.0) as u64}),
        );
    }
    recoveries.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let pct = |q: f64| {
        recoveries
            .get(((recoveries.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let mut figures = vec![("faults injected".to_string(), json!(count))];
    for (k, v) in kinds {
        figures.push((format!("  {k}"), json!(v)));
    }
    figures.push((
        "time to recover p50 / max (s)".into(),
        json!(format!("{:.2} / {:.2}", pct(0.5), pct(1.0))),
    ));
    Ok(Injected {
        count,
        figures,
        restarted_at,
    })
}

/// Every partition consumer's state, for a run that did not drain.
async fn consumer_states(stack: &Stack) -> String {
    let name = format!("{}_CMD", stack.prefix.to_uppercase());
    let Ok(stream) = stack.js.get_stream(&name).await else {
        return "no stream".into();
    };
    let mut out = Vec::new();
    for p in 0..oneclick::subjects::DEFAULT_PARTITIONS {
        let consumer_name = oneclick::subjects::Subjects::new(&stack.prefix).command_consumer(p);
        match stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&consumer_name)
            .await
        {
            Ok(mut c) => match c.info().await {
                Ok(i) => {
                    if i.num_pending > 0 || i.num_ack_pending > 0 {
                        out.push(format!(
                            "{consumer_name}: pending {} ack_pending {} redelivered {} waiting {} delivered {} ack_floor {}",
                            i.num_pending, i.num_ack_pending, i.num_redelivered, i.num_waiting, i.delivered.stream_sequence, i.ack_floor.stream_sequence
                        ))
                    }
                }
                Err(e) => out.push(format!("{consumer_name}: {e}")),
            },
            Err(e) => out.push(format!("{consumer_name}: {e}")),
        }
    }
    out.join("; ")
}
