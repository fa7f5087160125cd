//! The interactive (request-reply) load that runs beside the durable load in `rolling-restart`
//! and `nats-node-loss`: payment pages asking for the offer (`<p>.v1.gw.offer`) and merchants
//! paying with a saved card (Token Pay over `<p>.v1.merchant.<id>.token.pay`), alternately, at a
//! fixed rate over 16 workers, each request sent ONCE with a deadline and never
//! retried — a request without a reply within [`DEADLINE`] is counted **unanswered**, with the
//! time it was sent (a timeout is recorded when it expires, 10 s after the send: the send time is
//! what to compare with the faults). Every attempt and every reply is a line of history.jsonl.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::*;
use crate::report::History;
use crate::stack::Stack;

/// How long the generator waits for a reply (the service answers within its own 5 s deadline).
pub const DEADLINE: Duration = Duration::from_secs(10);

/// What the interactive load saw.
#[derive(Default)]
pub struct Tally {
    pub sent: AtomicU64,
    /// Any reply (approved, declined, or a fault).
    pub answered: AtomicU64,
    /// Replies that are retryable service faults (9/2 deadline, 9/3 unavailable, 9/4 shutting
    /// down): answered, but the payment did not happen. Shown, not judged: they are answers (a
    /// 9/3 can be a database deadlock between two replicas paying for one customer, see the
    /// replicas' logs).
    pub retryable_faults: AtomicU64,
    /// Requests without a reply: order number, error, when sent and when given up (history ms).
    pub unanswered: Mutex<Vec<Value>>,
    /// Every order number sent (they are the merchants' own: not "unexpected" in the database).
    pub orders: Mutex<Vec<String>>,
}

pub struct Interactive {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub tally: Arc<Tally>,
}

/// One saved card per interactive customer (`ir-<n>`), saved before the load and the faults.
pub async fn setup(stack: &Stack, customers: usize) -> anyhow::Result<Vec<(String, String)>> {
    let register = stack.subject("gw.register");
    let saved = futures::future::join_all((0..customers).map(|c| {
        let customer = format!("ir-{c}");
        let pan = test_pan("4", 7_000_000 + c as u64 * 1013);
        let body = merge(
            order_of(DEMO_MERCHANT, &format!("ir-init-{c}"), "0", &customer),
            json!({"card": card(&pan, "123", 12)}),
        );
        let (client, register) = (stack.client.clone(), register.clone());
        async move {
            let reply = request_until_answered(&client, &register, &body, Duration::from_secs(60))
                .await
                .0;
            (customer, reply)
        }
    }))
    .await;
    saved
        .into_iter()
        .map(|(customer, reply)| {
            let token = reply
                .as_ref()
                .and_then(|r| r["token"].as_str())
                .ok_or_else(|| anyhow::anyhow!("interactive setup save of {customer}: {reply:?}"))?
                .to_string();
            Ok((customer, token))
        })
        .collect()
}

/// The order numbers of the setup saves (orders in the database the generator made).
pub fn setup_orders(customers: usize) -> impl Iterator<Item = String> {
    (0..customers).map(|c| format!("ir-init-{c}"))
}

impl Interactive {
    /// Starts `workers` closed-loop workers sending `rate` requests per second in all.
    pub fn start(
        stack: Arc<Stack>,
        history: Arc<History>,
        cards: Vec<(String, String)>,
        workers: usize,
        rate: f64,
        seed: u64,
    ) -> Interactive {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let cards = Arc::new(cards);
        let subject = stack.subject(&format!("merchant.{DEMO_MERCHANT}.token.pay"));
        let per_worker = rate / workers.max(1) as f64;
        let tasks = (0..workers)
            .map(|w| {
                let (stack, history, stop, tally, cards, subject, offer) = (
                    stack.clone(),
                    history.clone(),
                    stop.clone(),
                    tally.clone(),
                    cards.clone(),
                    subject.clone(),
                    stack.subject("gw.offer"),
                );
                tokio::spawn(async move {
                    let mut rng = Rng::new(seed ^ (w as u64).wrapping_mul(0x9E37_79B9));
                    let began = Instant::now();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let due = began + Duration::from_secs_f64(n as f64 / per_worker);
                        tokio::time::sleep_until(due.into()).await;
                        n += 1;
                        let (customer, token) = &cards[rng.below(cards.len() as u64) as usize];
                        let order_no = format!("ir-{w}-{n}");
                        // Every other request an offer (answered from memory by the endpoint's
                        // own loop), else a Token Pay (its own task, the database, the acquirer).
                        let (subject, body) = if n.is_multiple_of(2) {
                            (&offer, order_of(DEMO_MERCHANT, &order_no, "1.00", customer))
                        } else {
                            (&subject, json!({"merchant": auth_of(DEMO_MERCHANT), "order_number": order_no,
                                "order_amount": "1.00", "order_currency": "RUB", "token_type": 5,
                                "payment_token": {"token": token, "customer_number": customer}}))
                        };
                        if let Ok(mut o) = tally.orders.lock() {
                            o.push(order_no.clone());
                        }
                        tally.sent.fetch_add(1, Ordering::Relaxed);
                        let sent_ms = history.now_ms();
                        history.record(json!({"op": "request", "order": order_no}));
                        match request(&stack.client, subject, &body, DEADLINE).await {
                            Ok(reply) => {
                                tally.answered.fetch_add(1, Ordering::Relaxed);
                                if retryable_fault(&reply) {
                                    tally.retryable_faults.fetch_add(1, Ordering::Relaxed);
                                }
                                history.record(json!({"ack": "request", "order": order_no, "sent_ms": sent_ms,
                                    "state": reply.get("order_state"), "fault": reply.get("fault")}));
                            }
                            Err(e) => {
                                let line = json!({"unanswered": order_no, "error": format!("{e:?}"),
                                    "sent_ms": sent_ms, "given_up_ms": history.now_ms()});
                                history.record(line.clone());
                                if let Ok(mut u) = tally.unanswered.lock() {
                                    u.push(line);
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Interactive { stop, tasks, tally }
    }

    /// Stops sending and waits for every request in flight to be answered or to time out.
    pub async fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.tally
    }
}
