//! How the load generator talks to oneclick, as a gateway or merchant would: signed orders,
//! request-reply with a deadline, durable commands published to JetStream with
//! `Nats-Msg-Id` = command id and re-published with the same id until acknowledged, the event
//! stream read back in order, and raw SQL on the scenario's database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use futures::StreamExt as _;
use serde_json::{json, Value};

// The demo and second merchants, signed orders and test cards are the test kit's (one home).
pub use oneclick_testkit::chaos::{
    auth_of, order_of, test_pan, OTHER_LOGIN, OTHER_MERCHANT, OTHER_PASSWORD,
};
pub use oneclick_testkit::nats::{DEMO_KEY_B64, DEMO_LOGIN, DEMO_MERCHANT, DEMO_PASSWORD};

/// Connection events seen by the load generator's client.
#[derive(Default)]
pub struct ClientEvents {
    pub disconnects: AtomicU64,
    pub reconnects: AtomicU64,
}

/// A NATS client that counts its disconnects and reconnects and retries forever. `urls` is one
/// URL or several comma-separated (a cluster's nodes); `user` = (name, password) when the
/// servers require it.
pub async fn connect(
    urls: &str,
    user: Option<(&str, &str)>,
) -> anyhow::Result<(async_nats::Client, Arc<ClientEvents>)> {
    let events = Arc::new(ClientEvents::default());
    let e = events.clone();
    let mut options = async_nats::ConnectOptions::new();
    if let Some((name, password)) = user {
        options = options.user_and_password(name.to_string(), password.to_string());
    }
    let client = options
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(move |event| {
            let e = e.clone();
            async move {
                match event {
                    async_nats::Event::Disconnected => {
                        e.disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    async_nats::Event::Connected => {
                        e.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        })
        .connect(oneclick::config::server_urls(urls))
        .await
        .context("connecting to NATS")?;
    Ok((client, events))
}

pub fn card(number: &str, cvc: &str, month: u32) -> Value {
    json!({"number": number, "expire_month": month.to_string(), "expire_year": "2030", "holder": "IVAN IVANOV", "cvc": cvc})
}

pub fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

pub fn fault_of(reply: &Value) -> Option<(i64, i64)> {
    let f = reply.get("fault")?;
    Some((
        f.get("faultcode")?.as_i64()?,
        f.get("faultstring")?.as_i64()?,
    ))
}

pub fn is_fault(reply: &Value) -> bool {
    reply.get("fault").is_some()
}

/// Why a request got no JSON reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReply {
    TimedOut,
    NoResponders,
    Other,
}

pub async fn request(
    client: &async_nats::Client,
    subject: &str,
    body: &Value,
    timeout: Duration,
) -> Result<Value, NoReply> {
    let bytes = serde_json::to_vec(body).map_err(|_| NoReply::Other)?;
    // The reply comes back on an inbox of the caller the subject names (issue 12: the service
    // answers gateway subjects only under _INBOX.gateway., merchant <id> under
    // _INBOX.merchant_<id>.).
    let reply = oneclick_testkit::inbox::request_as_caller(
        client,
        subject.to_string(),
        bytes.into(),
        timeout,
    )
    .await;
    match reply {
        Err(e) => Err(match e.kind() {
            async_nats::client::RequestErrorKind::NoResponders => NoReply::NoResponders,
            async_nats::client::RequestErrorKind::TimedOut => NoReply::TimedOut,
            _ => NoReply::Other,
        }),
        Ok(m) => serde_json::from_slice(&m.payload).map_err(|_| NoReply::Other),
    }
}

/// Faults worth a retry with the same order number (docs/protocol.md §6: 9/2, 9/3, 9/4).
pub fn retryable_fault(reply: &Value) -> bool {
    matches!(fault_of(reply), Some((9, 2)) | Some((9, 3)) | Some((9, 4)))
}

/// Request-reply retried (same body: R16 makes it safe) until a final answer; returns the reply
/// and the number of retries.
pub async fn request_until_answered(
    client: &async_nats::Client,
    subject: &str,
    body: &Value,
    give_up: Duration,
) -> (Option<Value>, u64) {
    let until = tokio::time::Instant::now() + give_up;
    let mut retries = 0;
    loop {
        match request(client, subject, body, Duration::from_secs(7)).await {
            Ok(reply) if !retryable_fault(&reply) => return (Some(reply), retries),
            _ => {}
        }
        if tokio::time::Instant::now() > until {
            return (None, retries);
        }
        retries += 1;
        tokio::time::sleep(Duration::from_millis(100 + 50 * retries.min(10))).await;
    }
}

/// Outcome of publishing one durable command until acknowledged.
pub struct Published {
    pub acked: bool,
    pub attempts: u64,
    /// The server said the last accepted copy was a duplicate of an earlier one.
    pub duplicate: bool,
    pub stream_sequence: u64,
}

/// Publishes with `Nats-Msg-Id` = `msg_id`, re-publishing the same id until the stream acks
/// (a gateway that lost the ack cannot know whether the command was stored).
pub async fn publish_until_acked(
    js: &jetstream::Context,
    subject: &str,
    msg_id: &str,
    body: &[u8],
    give_up: Duration,
) -> Published {
    let until = tokio::time::Instant::now() + give_up;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        let outcome = tokio::time::timeout(Duration::from_secs(5), async {
            let ack = js
                .publish_with_headers(subject.to_string(), headers, body.to_vec().into())
                .await
                .ok()?;
            ack.await.ok()
        })
        .await;
        if let Ok(Some(ack)) = outcome {
            return Published {
                acked: true,
                attempts,
                duplicate: ack.duplicate,
                stream_sequence: ack.sequence,
            };
        }
        if tokio::time::Instant::now() > until {
            return Published {
                acked: false,
                attempts,
                duplicate: false,
                stream_sequence: 0,
            };
        }
        tokio::time::sleep(Duration::from_millis(100 + 50 * attempts.min(10))).await;
    }
}

/// The subject of a durable command (the partition of its customer).
pub fn command_subject(prefix: &str, command: &Value) -> anyhow::Result<String> {
    let envelope: oneclick::wire::CommandEnvelope =
        serde_json::from_value(command.clone()).context("a valid command")?;
    Ok(envelope.subject(
        &oneclick::subjects::Subjects::new(prefix),
        oneclick::subjects::DEFAULT_PARTITIONS,
    ))
}

/// Every message of the events stream, in stream order: `(stream sequence, event)`.
pub async fn read_events(
    js: &jetstream::Context,
    prefix: &str,
) -> anyhow::Result<Vec<(u64, Value)>> {
    let name = format!("{}_EVT", prefix.to_uppercase().replace('-', "_"));
    let mut stream = js
        .get_stream(&name)
        .await
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let last = stream
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .state
        .last_sequence;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .map_err(|e| anyhow::anyhow!("ordered consumer: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), messages.next()).await
    {
        let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
        out.push((
            seq,
            serde_json::from_slice(&m.payload).unwrap_or(Value::Null),
        ));
        if seq >= last {
            break;
        }
    }
    Ok(out)
}

/// Messages still in the command stream (work queue: not yet acknowledged by oneclick).
pub async fn pending_commands(js: &jetstream::Context, prefix: &str) -> Option<u64> {
    let name = format!("{}_CMD", prefix.to_uppercase().replace('-', "_"));
    let mut stream = js.get_stream(&name).await.ok()?;
    Some(stream.info().await.ok()?.state.messages)
}

// ---- SQL ---------------------------------------------------------------------------------------

pub struct Sql(diesel::PgConnection);

#[derive(diesel::QueryableByName)]
struct TextRow {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    v: Option<String>,
}

impl Sql {
    pub fn open(url: &str) -> anyhow::Result<Sql> {
        use diesel::Connection as _;
        Ok(Sql(diesel::PgConnection::establish(url).with_context(
            || "connecting to the scenario's database",
        )?))
    }

    pub fn exec(&mut self, sql: &str) -> anyhow::Result<usize> {
        use diesel::RunQueryDsl as _;
        diesel::sql_query(sql)
            .execute(&mut self.0)
            .with_context(|| sql.chars().take(200).collect::<String>())
    }

    /// Rows of a query whose only column is named `v` (cast to TEXT).
    pub fn texts(&mut self, sql: &str) -> anyhow::Result<Vec<Option<String>>> {
        use diesel::RunQueryDsl as _;
        let rows: Vec<TextRow> = diesel::sql_query(sql)
            .load(&mut self.0)
            .with_context(|| sql.to_string())?;
        Ok(rows.into_iter().map(|r| r.v).collect())
    }

    /// One number from a query whose only column is named `v`.
    pub fn number(&mut self, sql: &str) -> anyhow::Result<i64> {
        let rows = self.texts(sql)?;
        let v = rows.into_iter().next().flatten().unwrap_or_default();
        v.parse::<i64>()
            .with_context(|| format!("not a number from {sql}: {v:?}"))
    }

    /// Rows as tab-separated text columns: `SELECT concat_ws(E'\t', …) AS v`.
    pub fn rows(&mut self, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        Ok(self
            .texts(sql)?
            .into_iter()
            .flatten()
            .map(|r| r.split('\t').map(str::to_string).collect())
            .collect())
    }
}

/// A small deterministic PRNG (SplitMix64): runs are reproducible from `--seed`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over `0..n` by inverse CDF: rank 0 is the hottest.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        Zipf {
            cdf: weights
                .iter()
                .map(|w| {
                    acc += w / total;
                    acc
                })
                .collect(),
        }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}
