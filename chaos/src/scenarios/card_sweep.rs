//! Scenario 7: card-data sweep. A run with known test cards through every path that carries card
//! data (new-card payments with save, a repeat with another CVC, registrations, saved-card
//! payments with CVC, a recurring initial payment, declines, time-outs, bad input carrying a PAN,
//! durable Token Pay and deletions through JetStream), then a search of the database (every
//! table, every column, text and bytes, and every row as text), the JetStream store directory
//! (every file, raw bytes) and every oneclick log (debug level) for every PAN, every CVC and their
//! unkeyed SHA-256 (hex and raw): 0 found. Then the crypto checks: a ciphertext swapped between
//! two rows, a flipped bit and a wrong key fail to open; 10^6 encryptions (10^5 short) repeat no
//! nonce. Stretch: a core dump of the running service (`gcore`), searched for the PANs; reported,
//! not a check (a process holds a PAN in memory while it authorizes).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::client::*;
use crate::report::{History, Report};
use crate::stack::{Stack, StackOptions};
use crate::Run;

// The needles and the places to search, shared with the test suite's card-data checks.
use oneclick_testkit::card_scan::*;

pub async fn run(run: &Run, report: &mut Report) -> anyhow::Result<()> {
    let cards = if run.short { 24 } else { 300 };
    let nonces = if run.short { 100_000 } else { 1_000_000 };
    let history = History::create(&run.out.join("history.jsonl"))?;
    let stack = Stack::start(
        &run.out,
        StackOptions {
            env: vec![("ONECLICK__LOG__LEVEL".into(), "debug".into())],
            ..Default::default()
        },
        |_| Ok(()),
    )
    .await?;
    let prefixes = ["41", "52", "22", "45"];
    let pans: Vec<String> = (0..cards)
        .map(|n| test_pan(prefixes[n % prefixes.len()], 7_301_000 + n as u64 * 7919))
        .collect();
    let cvcs: Vec<String> = ["947", "863", "771", "658", "539", "482"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let gw = |e: &str| stack.subject(&format!("gw.{e}"));
    let ask = |subject: String, body: Value| {
        let client = stack.client.clone();
        async move {
            request(&client, &subject, &body, Duration::from_secs(10))
                .await
                .unwrap_or(Value::Null)
        }
    };
    let mut tokens: Vec<(String, String)> = Vec::new();
    let mut calls = 0u64;
    // New-card payments with save; every fourth card is a registration instead.
    for (i, pan) in pans.iter().enumerate() {
        let customer = format!("sw-{}", i % (cards / 3).max(1));
        let cvc = &cvcs[i % cvcs.len()];
        history.record(json!({"op": if i % 4 == 3 { "register" } else { "pay" }, "card": format!("{}…{}", &pan[..6], &pan[12..]), "customer": customer}));
        let reply = if i % 4 == 3 {
            ask(
                gw("register"),
                merge(
                    order_of(DEMO_MERCHANT, &format!("sw-reg-{i}"), "0", &customer),
                    json!({"card": card(pan, cvc, 12)}),
                ),
            )
            .await
        } else {
            ask(
                gw("pay"),
                merge(
                    order_of(DEMO_MERCHANT, &format!("sw-save-{i}"), "1.00", &customer),
                    json!({"card": card(pan, cvc, 12)}),
                ),
            )
            .await
        };
        calls += 1;
        if let Some(t) = reply["token"].as_str() {
            tokens.push((customer, t.to_string()));
        }
    }
    // A repeat with another CVC; saved-card payments with CVC (approved, declined, in doubt).
    ask(
        gw("pay"),
        merge(
            order_of(DEMO_MERCHANT, "sw-save-0", "1.00", "sw-0"),
            json!({"card": card(&pans[0], &cvcs[5], 12)}),
        ),
    )
    .await;
    for (i, (customer, token)) in tokens.iter().enumerate() {
        let amount = ["2.00", "2.51", "2.13"][i % 3];
        ask(
            gw("pay_saved"),
            merge(
                order_of(DEMO_MERCHANT, &format!("sw-ps-{i}"), amount, customer),
                json!({"token": token, "cvc": cvcs[(i + 1) % cvcs.len()]}),
            ),
        )
        .await;
        calls += 1;
    }
    // Recurring initial payment (the agreement keeps its own ciphertext).
    ask(gw("pay"), json!({"merchant_id": DEMO_MERCHANT.to_string(), "order_number": "sw-rec", "order_amount": "5.00", "order_currency": "RUB",
        "card": card(&pans[1], &cvcs[0], 12), "recurring_indicator": "1", "recurring_min_amount": "1.00",
        "recurring_max_amount": "10.00", "recurring_period": "1", "recurring_max_date": "31.12.2030"})).await;
    // Bad input carrying card data.
    let p = &pans[2];
    for body in [
        merge(
            order_of(DEMO_MERCHANT, "sw-bad-1", "1.00", "sw-0"),
            json!({"card": {"number": p, "expire_month": "13", "expire_year": "2030", "holder": "IVAN IVANOV", "cvc": cvcs[1]}}),
        ),
        merge(
            order_of(DEMO_MERCHANT, "sw-bad-2", "1.00", "sw-0"),
            json!({"card": {"number": p, "expire_month": "12", "expire_year": "2030", "holder": "IVAN IVANOV", "cvc": 12345}}),
        ),
        merge(
            order_of(DEMO_MERCHANT, "sw-bad-3", "1.00", "sw-0"),
            json!({"card": {"number": format!("{p}0"), "expire_month": "12", "expire_year": "2030", "holder": "I", "cvc": cvcs[2]}}),
        ),
        merge(
            order_of(DEMO_MERCHANT, "sw-bad-4", "1.00", "sw-0"),
            json!({"card": card(p, &cvcs[3], 12), "signature": "AAAA"}),
        ),
        json!({"merchant_id": "0", "card": card(p, &cvcs[4], 12)}),
    ] {
        ask(gw("pay"), body).await;
        calls += 1;
    }
    let broken = format!(
        r#"{{"merchant_id":"{DEMO_MERCHANT}","card":{{"number":"{p}","cvc":"{}""#,
        cvcs[4]
    );
    let _ = oneclick_testkit::inbox::request_as_caller(
        &stack.client,
        gw("pay"),
        broken.into_bytes().into(),
        Duration::from_secs(10),
    )
    .await;
    // Durable Token Pay and deletions through the JetStream store.
    for (i, (customer, token)) in tokens.iter().enumerate().take(40) {
        let cmd = if i % 5 == 4 {
            json!({"command_id": format!("sw-cmd-{i}"), "kind": "delete_card", "merchant_id": DEMO_MERCHANT, "customer_number": customer, "token": token})
        } else {
            json!({"command_id": format!("sw-cmd-{i}"), "kind": "token_pay", "merchant_id": DEMO_MERCHANT, "order_number": format!("sw-tp-{i}"),
                   "order_amount": "3.00", "order_currency": "RUB", "customer_number": customer, "token": token})
        };
        let subject = command_subject(&stack.prefix, &cmd)?;
        publish_until_acked(
            &stack.js,
            &subject,
            &format!("sw-cmd-{i}"),
            &serde_json::to_vec(&cmd)?,
            Duration::from_secs(30),
        )
        .await;
    }
    for _ in 0..200 {
        if pending_commands(&stack.js, &stack.prefix).await == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    history.flush();

    // Stretch: a core dump of the running service, taken before the sweep.
    let core_hits = core_dump_hits(&stack, &pans, report);

    let needles = needles(&pans, &cvcs);
    let mut sql = stack.sql()?;
    let mut haystacks = haystacks_of(postgres_values(|q| sql.texts(q))?);
    let db_values = haystacks.len();
    let store = stack
        .nats
        .lock()
        .map_err(|_| anyhow::anyhow!("nats lock"))?
        .single()?
        .store
        .clone();
    let store_files = file_haystacks(&store, "JetStream store", |_| false);
    let store_bytes: usize = store_files.iter().map(|h| h.bytes.len()).sum();
    haystacks.extend(store_files);
    // Everything else in the run folder: every oneclick log, the nats-server log, the key file.
    // Not this tool's own history: its timestamps are whole numbers a CVC can equal, and it
    // holds masked cards only, by construction.
    let store2 = store.clone();
    let others = file_haystacks(&run.out, "run folder", move |p: &Path| {
        p.starts_with(&store2) || p.ends_with("history.jsonl")
    });
    let log_bytes: usize = others
        .iter()
        .filter(|h| h.place.ends_with(".log"))
        .map(|h| h.bytes.len())
        .sum();
    haystacks.extend(others);
    let control = Haystack {
        place: "control".into(),
        bytes: serde_json::to_vec(&card(&pans[0], &cvcs[0], 12))?,
        numbers_only: false,
    };
    let control_found = needles
        .iter()
        .filter(|n| contains(&control.bytes, n))
        .count();
    let mut found = Vec::new();
    for n in &needles {
        for h in &haystacks {
            if n.whole && h.numbers_only {
                continue;
            }
            let k = occurrences(&h.bytes, n);
            if k > 0 {
                found.push(json!({"what": n.what, "place": h.place, "count": k}));
            }
        }
    }
    std::fs::write(
        run.out.join("findings.json"),
        serde_json::to_vec_pretty(&found)?,
    )?;
    report.figure("test PANs", pans.len() as i64);
    report.figure("test CVCs", cvcs.len() as i64);
    report.figure("requests carrying card data", calls as i64);
    report.figure("needles (PAN, CVC, SHA-256 forms)", needles.len() as i64);
    report.figure("database values searched", db_values as i64);
    report.figure("JetStream store bytes searched", store_bytes as i64);
    report.figure("log bytes searched (debug level)", log_bytes as i64);
    report.expect(
        "control: the sweep finds a PAN and CVC where there is one",
        control_found >= 2,
        "≥ 2",
        control_found,
    );
    report.expect_eq("PAN / CVC / SHA-256 findings", found.len() as i64, 0);
    if let Some(hits) = core_hits {
        report.figure(
            "core dump: PAN occurrences (stretch, not a check)",
            hits as i64,
        );
    }

    // Crypto checks on the run's own rows and keys.
    use oneclick_actors::crypto::{card_aad_for, Keyring, MasterKey};
    let keys = stack
        .apps
        .lock()
        .map(|a| a[0].keys.clone())
        .map_err(|_| anyhow::anyhow!("lock"))?;
    // The key file is wrapped by the KEK beside it (chaos/src/procs.rs).
    let kek = oneclick_actors::crypto::LocalKek::load_file(keys.with_extension("kek"))?;
    let keyring = Keyring::load_file_with(&keys, Some(&kek))?;
    // Each row's associated data: its AAD version, owner (customer id and number) and token.
    let rows = sql.rows("SELECT concat_ws(E'\\t', k.token, k.key_version, encode(k.pan_ciphertext, 'hex'), k.aad_version, k.customer_id, c.customer_number) AS v FROM cards k JOIN customers c ON c.id = k.customer_id WHERE k.pan_ciphertext IS NOT NULL ORDER BY k.id LIMIT 2")?;
    anyhow::ensure!(rows.len() == 2, "two saved cards to test with");
    let row = |r: &Vec<String>| -> anyhow::Result<(Vec<u8>, u32, Vec<u8>)> {
        let aad = card_aad_for(r[3].parse()?, r[4].parse()?, &r[5], &r[0])?;
        Ok((aad, r[1].parse()?, unhex(&r[2])))
    };
    let (t0, v0, b0) = row(&rows[0])?;
    let (t1, v1, _) = row(&rows[1])?;
    let own = keyring
        .open(v0, &b0, &t0)
        .map(|p| pans.iter().any(|x| x.as_bytes() == &p[..]))
        .unwrap_or(false);
    let swapped = keyring.open(v1, &b0, &t1).is_err();
    let mut flipped = b0.clone();
    flipped[14] ^= 1;
    let flip = keyring.open(v0, &flipped, &t0).is_err();
    let wrong = Keyring::new(vec![(v0, MasterKey::generate())], v0, MasterKey::generate())?
        .open(v0, &b0, &t0)
        .is_err();
    let mut seen: HashSet<[u8; 12]> = HashSet::with_capacity(nonces);
    let mut repeated = 0i64;
    for _ in 0..nonces {
        let sealed = keyring.seal(b"4111111111111111", b"card:nonce-test")?;
        let mut n = [0u8; 12];
        n.copy_from_slice(&sealed.blob[..12]);
        if !seen.insert(n) {
            repeated += 1;
        }
    }
    report.expect(
        "a row opens with its own key and aad (and holds a run PAN)",
        own,
        "true",
        own,
    );
    report.expect(
        "ciphertext swapped between two rows fails",
        swapped,
        "true",
        swapped,
    );
    report.expect("a flipped bit fails", flip, "true", flip);
    report.expect("a wrong key fails", wrong, "true", wrong);
    report.figure("encryptions", nonces as i64);
    report.expect_eq("repeated nonces", repeated, 0);
    Ok(())
}

/// `gcore` of the running oneclick, searched for the run's PANs; `None` when gcore is missing.
fn core_dump_hits(stack: &Stack, pans: &[String], report: &mut Report) -> Option<usize> {
    let pid = stack.apps.lock().ok()?.first()?.pid()?;
    let which = std::process::Command::new("sh")
        .args(["-c", "command -v gcore"])
        .output()
        .ok()?;
    if !which.status.success() {
        report.note("gcore not found: core-dump stretch skipped");
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    let base = dir.path().join("core");
    let out = std::process::Command::new("gcore")
        .arg("-o")
        .arg(&base)
        .arg(pid.to_string())
        .output()
        .ok()?;
    let path = dir.path().join(format!("core.{pid}"));
    let bytes = std::fs::read(&path).ok();
    let Some(bytes) = bytes else {
        report.note(format!(
            "gcore failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
        return None;
    };
    // One pass over the dump: every run of ASCII digits, its 13–19 digit windows against the PANs.
    let wanted: std::collections::HashMap<&[u8], usize> = pans
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_bytes(), i))
        .collect();
    let mut per_pan = vec![0usize; pans.len()];
    let mut start = 0usize;
    for i in 0..=bytes.len() {
        if i < bytes.len() && bytes[i].is_ascii_digit() {
            continue;
        }
        let run = &bytes[start..i];
        if run.len() >= 13 {
            for len in 13..=19.min(run.len()) {
                for w in run.windows(len) {
                    if let Some(k) = wanted.get(w) {
                        per_pan[*k] += 1;
                    }
                }
            }
        }
        start = i + 1;
    }
    let distinct = per_pan.iter().filter(|k| **k > 0).count();
    report.figure("core dump size (MB)", (bytes.len() / 1_000_000) as i64);
    report.figure("core dump: distinct PANs found (stretch)", distinct as i64);
    Some(per_pan.iter().sum())
}
