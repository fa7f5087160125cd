//! Baseline: **the peer vault itself**, juspay/hyperswitch-card-vault (axum + Diesel +
//! PostgreSQL), measured in the same run on the same PostgreSQL server at the same concurrency,
//! instead of constants from another machine. The bench does not build it and holds none of its
//! code: `scripts/bench` builds it once with the peer's own `build` script into a cache folder
//! outside the repository's tracked files and passes `--peer-bin`; the peer's own `run` script
//! (from `--peer-dir`, default `../shared/peer/hyperswitch-card-vault`) creates its database on
//! the admin URL's server, writes its config (WARN logs, no key custodian, no JWE, its default
//! pool) and starts it on a free port; the bench stops it by its pid and drops its database.
//!
//! Two operations, each a closed loop of `concurrency` requesters with one kept-alive HTTP
//! connection each (`http.rs`):
//! - **add card** (`POST /data/add`): a new merchant customer each request, so every add
//!   inserts (the peer de-duplicates per card, merchant and customer): what `register` is for
//!   oneclick;
//! - **retrieve card** (`POST /data/retrieve`): one of `customers` cards added before the
//!   windows, picked like oneclick's customers: what `token-list` is for oneclick.
//!
//! Its transport to PostgreSQL is its own: diesel-async connects over TCP without TLS
//! (`NoTls`), whatever oneclick's URL says; the report states both.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use diesel::{Connection as _, PgConnection, RunQueryDsl as _};
use futures::future::FutureExt as _;
use tokio::sync::Mutex;

use crate::http::HttpConn;
use crate::load::{Call, Outcome};
use crate::rng::{KeyPicker, Rng};

const TENANT: (&str, &str) = ("x-tenant-id", "public");
const MERCHANT: &str = "m452739";

/// A running peer vault.
pub struct Peer {
    pid: u32,
    pub addr: SocketAddr,
    admin_url: String,
    pub db_name: String,
    pub log: PathBuf,
}

impl Peer {
    /// Starts the peer with its `run` script; its state (config, log) goes to `state_dir`.
    pub fn start(
        peer_dir: &Path,
        bin: &Path,
        admin_url: &str,
        state_dir: &Path,
    ) -> anyhow::Result<Peer> {
        let port = crate::stack::free_port()?;
        let db_name = format!("oneclick_bench_{}_peer", std::process::id());
        std::fs::create_dir_all(state_dir)?;
        let out = Command::new(peer_dir.join("run"))
            .arg(admin_url)
            .arg(port.to_string())
            .arg(bin)
            .env("PEER_DB_NAME", &db_name)
            .env("PEER_STATE_DIR", state_dir)
            .output()
            .with_context(|| format!("cannot run {}", peer_dir.join("run").display()))?;
        if !out.status.success() {
            bail!(
                "the peer's run script failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
        }
        let pid: u32 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .context("the peer's run script printed no pid")?;
        Ok(Peer {
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin_url: admin_url.to_string(),
            db_name,
            log: state_dir.join("locker.log"),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Adds `n` cards (one new merchant customer each), `concurrency` in flight; returns
    /// (customer, card reference) pairs for the retrieve loop.
    pub async fn seed(
        &self,
        n: usize,
        concurrency: usize,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency.clamp(1, n.max(1)) {
            let (next, addr) = (next.clone(), self.addr);
            tasks.push(tokio::spawn(async move {
                let mut conn = HttpConn::new(addr);
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let customer = format!("s{i}");
                    let reply = conn
                        .post_json("/data/add", &[TENANT], add_body(&customer).as_bytes())
                        .await?;
                    let reference = card_reference(&reply.body).with_context(|| {
                        format!(
                            "peer add card: HTTP {} {}",
                            reply.status,
                            String::from_utf8_lossy(&reply.body)
                        )
                    })?;
                    out.push((i, customer, reference));
                }
                anyhow::Ok(out)
            }));
        }
        let mut all = Vec::with_capacity(n);
        for t in tasks {
            all.extend(t.await??);
        }
        all.sort_by_key(|(i, _, _)| *i);
        eprintln!(
            "  peer: added {n} cards to retrieve in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(all.into_iter().map(|(_, c, r)| (c, r)).collect())
    }

    /// Requesters adding a card for a new customer each request.
    pub fn add_calls(&self, concurrency: usize, tag: &str) -> Vec<Call> {
        (0..concurrency)
            .map(|w| {
                let conn = Arc::new(Mutex::new(HttpConn::new(self.addr)));
                let tag = tag.to_string();
                let mut seq = 0u64;
                Box::new(move || {
                    seq += 1;
                    let body = add_body(&format!("{tag}-{w}-{seq}"));
                    let conn = conn.clone();
                    async move {
                        let mut conn = conn.lock().await;
                        let r = conn
                            .post_json("/data/add", &[TENANT], body.as_bytes())
                            .await;
                        outcome(r, body.len(), |b| card_reference(b).is_some())
                    }
                    .boxed()
                }) as Call
            })
            .collect()
    }

    /// Requesters retrieving one of `cards`, picked by `picker`.
    pub fn retrieve_calls(
        &self,
        concurrency: usize,
        cards: &Arc<Vec<(String, String)>>,
        picker: &Arc<KeyPicker>,
    ) -> Vec<Call> {
        (0..concurrency)
            .map(|w| {
                let conn = Arc::new(Mutex::new(HttpConn::new(self.addr)));
                let (cards, picker) = (cards.clone(), picker.clone());
                let mut rng = Rng::new(w as u64 * 7919 + 17);
                Box::new(move || {
                    let (customer, reference) =
                        &cards[picker.pick(&mut rng) % cards.len().max(1)];
                    let body = format!(
                        r#"{{"merchant_id":"{MERCHANT}","merchant_customer_id":"{customer}","card_reference":"{reference}"}}"#
                    );
                    let conn = conn.clone();
                    async move {
                        let mut conn = conn.lock().await;
                        let r = conn
                            .post_json("/data/retrieve", &[TENANT], body.as_bytes())
                            .await;
                        outcome(r, body.len(), |b| {
                            b.windows(13).any(|w| w == b"\"card_number\"")
                        })
                    }
                    .boxed()
                }) as Call
            })
            .collect()
    }
}

fn add_body(customer: &str) -> String {
    format!(
        r#"{{"merchant_id":"{MERCHANT}","merchant_customer_id":"{customer}","requestor_card_reference":null,"card":{{"card_number":"4111111111111111","name_on_card":"IVAN IVANOV","card_exp_month":"12","card_exp_year":"2030"}},"ttl":null}}"#
    )
}

fn card_reference(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["payload"]["card_reference"].as_str().map(str::to_string)
}

fn outcome(
    reply: anyhow::Result<crate::http::Reply>,
    request_bytes: usize,
    good: impl Fn(&[u8]) -> bool,
) -> Outcome {
    match reply {
        Ok(r) => Outcome {
            verdict: (r.status != 200 || !good(&r.body)).then(|| format!("http {}", r.status)),
            request_bytes: request_bytes as u64,
            reply_bytes: r.body.len() as u64,
        },
        Err(e) => Outcome {
            verdict: Some(format!("peer: {}", e.root_cause())),
            request_bytes: request_bytes as u64,
            reply_bytes: 0,
        },
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            ))
            .execute(&mut admin);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_add_reply_gives_the_card_reference() {
        let reply = br#"{"status":"Ok","payload":{"card_reference":"01a24cc6-7da9-7eb0-a6a4-bd003ae6a291","duplication_check":null,"dedup":null}}"#;
        assert_eq!(
            card_reference(reply).as_deref(),
            Some("01a24cc6-7da9-7eb0-a6a4-bd003ae6a291")
        );
        assert_eq!(card_reference(br#"{"code":"TE_02"}"#), None);
        let v: serde_json::Value = serde_json::from_str(&add_body("c1")).expect("json");
        assert_eq!(v["card"]["card_number"], "4111111111111111");
    }
}
