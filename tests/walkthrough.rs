//! Runs the README walkthrough: every `$ oneclick …` line against a fresh service (private NATS,
//! the real binary, SQLite), comparing each reply with the output shown in the document. Card
//! tokens are random, so any UUID matches any UUID; `$TOKEN` is the token the first payment saved.

use oneclick_testkit as support;

use std::process::Command;

use serde_json::Value;
use support::nats::*;

/// Splits a command line on spaces, keeping "double quoted" words together.
fn words(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
}

/// Replaces every UUID inside strings with a placeholder.
fn normalize(v: &mut Value) {
    match v {
        Value::String(s) => {
            for word in s.clone().split(' ') {
                if is_uuid(word) {
                    *s = s.replace(word, "<uuid>");
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        Value::Object(o) => o.values_mut().for_each(normalize),
        _ => {}
    }
}

/// (command line, expected output) pairs from the console blocks of the document.
fn steps(doc: &str) -> Vec<(String, String)> {
    let mut steps: Vec<(String, String)> = Vec::new();
    let mut in_block = false;
    for line in doc.lines() {
        if line.starts_with("```console") {
            in_block = true;
        } else if line.starts_with("```") {
            in_block = false;
        } else if in_block {
            if let Some(cmd) = line.strip_prefix("$ ") {
                steps.push((cmd.to_string(), String::new()));
            } else if let Some(last) = steps.last_mut() {
                last.1.push_str(line);
                last.1.push('\n');
            }
        }
    }
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_reproduces_its_output() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let steps = steps(&doc);
    assert!(steps.len() >= 8, "the walkthrough has its steps");
    let stack = Stack::start().await;
    let mut token = String::new();
    for (line, expected) in steps {
        let mut args = words(&line);
        assert_eq!(args.remove(0), "oneclick", "{line}");
        for a in args.iter_mut() {
            if a == "$TOKEN" {
                *a = token.clone();
            }
        }
        let out = Command::new(bin())
            .args(&args)
            .envs(stack.app.env.iter().cloned())
            .output()
            .expect("run the client");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut got: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| {
            panic!(
                "{line}: not JSON: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let mut want: Value = serde_json::from_str(&expected)
            .unwrap_or_else(|e| panic!("{line}: the document's output is not JSON: {e}"));
        if token.is_empty() {
            if let Some(t) = got.get("token").and_then(Value::as_str) {
                token = t.to_string();
            }
        }
        let is_fault = got.get("fault").is_some_and(|f| !f.is_null());
        assert_eq!(
            out.status.code(),
            Some(if is_fault { 3 } else { 0 }),
            "{line}: exit code"
        );
        normalize(&mut got);
        normalize(&mut want);
        assert_eq!(got, want, "{line}");
    }
}
