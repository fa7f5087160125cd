//! The card-data scan: every form in which a PAN or CVC must never be found, and the places to
//! look (every value and row of a PostgreSQL database, every file under a directory).
//!
//! Shared by the test suite, the chaos binary's card sweep (`chaos/src/scenarios/card_sweep.rs`)
//! and the log scan (`attacks/logs.rs`), so all look for the same needles the same way. Besides
//! the stored forms, [`secret_needles`] and [`short_secret_needles`] give the forms a *log* would
//! carry a secret in (JSON-escaped, base64 at any alignment, hex, `Debug` byte arrays). It
//! depends only on `base64`, `sha2` and `serde_json`.

use std::path::Path;

/// Something that must not be found anywhere.
pub struct Needle {
    pub what: String,
    pub bytes: Vec<u8>,
    /// Only a whole value counts: the bytes around it are not ASCII letters or digits (a 3-digit
    /// CVC would otherwise be found inside timestamps, ids and random bytes).
    pub whole: bool,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// Every PAN in the forms a careless implementation would store it (plain, hex, base64) and its
/// unkeyed SHA-256 (raw, hex, base64); every CVC as a whole value, and its SHA-256.
pub fn needles(pans: &[String], cvcs: &[String]) -> Vec<Needle> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for pan in pans {
        let label = format!("{}…{}", &pan[..6], &pan[pan.len() - 4..]);
        let sha = sha2::Sha256::digest(pan.as_bytes()).to_vec();
        for (form, bytes) in [
            ("PAN", pan.as_bytes().to_vec()),
            ("PAN as hex", hex(pan.as_bytes()).into_bytes()),
            (
                "PAN as HEX",
                hex(pan.as_bytes()).to_uppercase().into_bytes(),
            ),
            ("PAN as base64", b64.encode(pan.as_bytes()).into_bytes()),
            ("SHA-256 of the PAN, raw", sha.clone()),
            ("SHA-256 of the PAN, hex", hex(&sha).into_bytes()),
            (
                "SHA-256 of the PAN, HEX",
                hex(&sha).to_uppercase().into_bytes(),
            ),
            ("SHA-256 of the PAN, base64", b64.encode(&sha).into_bytes()),
        ] {
            out.push(Needle {
                what: format!("{form} of {label}"),
                bytes,
                whole: false,
            });
        }
    }
    for cvc in cvcs {
        let sha = sha2::Sha256::digest(cvc.as_bytes()).to_vec();
        out.push(Needle {
            what: format!("CVC {cvc}"),
            bytes: cvc.as_bytes().to_vec(),
            whole: true,
        });
        out.push(Needle {
            what: format!("SHA-256 of CVC {cvc}, raw"),
            bytes: sha.clone(),
            whole: false,
        });
        out.push(Needle {
            what: format!("SHA-256 of CVC {cvc}, hex"),
            bytes: hex(&sha).into_bytes(),
            whole: false,
        });
    }
    out
}

/// Where `needle` starts in `haystack` (whole values only when the needle says so).
fn positions<'a>(haystack: &'a [u8], needle: &'a Needle) -> impl Iterator<Item = usize> + 'a {
    let n = needle.bytes.len();
    let last = if n == 0 {
        None
    } else {
        haystack.len().checked_sub(n)
    };
    last.into_iter().flat_map(move |last| {
        (0..=last).filter(move |&i| {
            haystack[i..i + n] == needle.bytes[..]
                && (!needle.whole
                    || ((i == 0 || !haystack[i - 1].is_ascii_alphanumeric())
                        && (i + n == haystack.len() || !haystack[i + n].is_ascii_alphanumeric())))
        })
    })
}

pub fn contains(haystack: &[u8], needle: &Needle) -> bool {
    positions(haystack, needle).next().is_some()
}

/// How many times `needle` is found in `haystack`.
pub fn occurrences(haystack: &[u8], needle: &Needle) -> usize {
    positions(haystack, needle).count()
}

/// A place and its bytes.
pub struct Haystack {
    pub place: String,
    pub bytes: Vec<u8>,
    /// Database-assigned numbers (row ids, whole rows that start with one): a CVC-sized number
    /// here is a sequence value, not input, so whole-value needles (CVCs) skip it.
    pub numbers_only: bool,
}

/// Columns that hold database-assigned numbers only.
fn assigned_numbers(column: &str) -> bool {
    column == "id" || column.ends_with("_id")
}

/// One value stored in the database: its table, its column (`None`: the whole row as the
/// database prints it) and its bytes (text as UTF-8, binary as raw bytes).
pub struct StoredValue {
    pub table: String,
    pub column: Option<String>,
    pub bytes: Vec<u8>,
}

/// Every value of every column of every table of a PostgreSQL database (text as UTF-8, `bytea` as
/// raw bytes), and every whole row as PostgreSQL prints it; `texts` runs a query whose only
/// column is a nullable text named `v`.
pub fn postgres_values<E>(
    mut texts: impl FnMut(&str) -> Result<Vec<Option<String>>, E>,
) -> Result<Vec<StoredValue>, E> {
    let mut out = Vec::new();
    let tables = texts(
        "SELECT CAST(table_name AS TEXT) AS v FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )?;
    for table in tables.into_iter().flatten() {
        let columns = texts(&format!(
            "SELECT CAST(column_name AS TEXT) || ':' || CAST(data_type AS TEXT) AS v \
             FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '{table}'"
        ))?;
        for column in columns.into_iter().flatten() {
            let Some((name, data_type)) = column.split_once(':') else {
                continue;
            };
            let binary = data_type == "bytea";
            let sql = if binary {
                format!("SELECT encode(\"{name}\", 'hex') AS v FROM \"{table}\"")
            } else {
                format!("SELECT CAST(\"{name}\" AS TEXT) AS v FROM \"{table}\"")
            };
            for v in texts(&sql)?.into_iter().flatten() {
                out.push(StoredValue {
                    table: table.clone(),
                    column: Some(name.to_string()),
                    bytes: if binary { unhex(&v) } else { v.into_bytes() },
                });
            }
        }
        for v in texts(&format!("SELECT CAST(t AS TEXT) AS v FROM \"{table}\" t"))?
            .into_iter()
            .flatten()
        {
            out.push(StoredValue {
                table: table.clone(),
                column: None,
                bytes: v.into_bytes(),
            });
        }
    }
    Ok(out)
}

/// Stored values as haystacks named `database <table>.<column>` / `database <table> (row)`.
pub fn haystacks_of(values: Vec<StoredValue>) -> Vec<Haystack> {
    values
        .into_iter()
        .map(|v| match v.column {
            Some(column) => Haystack {
                place: format!("database {}.{column}", v.table),
                numbers_only: assigned_numbers(&column),
                bytes: v.bytes,
            },
            None => Haystack {
                place: format!("database {} (row)", v.table),
                bytes: v.bytes,
                numbers_only: true,
            },
        })
        .collect()
}

/// Every file under `dir` that `skip` does not exclude, raw bytes.
pub fn file_haystacks(dir: &Path, label: &str, skip: impl Fn(&Path) -> bool) -> Vec<Haystack> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !skip(&p) {
                if let Ok(bytes) = std::fs::read(&p) {
                    out.push(Haystack {
                        place: format!("{label} {}", p.display()),
                        bytes,
                        numbers_only: false,
                    });
                }
            }
        }
    }
    out
}

/// `(needle, place)` of every finding.
pub fn sweep(haystacks: &[Haystack], needles: &[Needle]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for n in needles {
        for h in haystacks {
            if !(n.whole && h.numbers_only) && contains(&h.bytes, n) {
                found.push((n.what.clone(), h.place.clone()));
            }
        }
    }
    found
}

/// `[52, 49, 49, …]`: how Rust's `Debug` prints a byte slice, array or `Vec<u8>`.
pub fn debug_bytes(bytes: &[u8]) -> String {
    format!("{bytes:?}")
}

/// The body of a JSON string holding `text` (quotes, backslashes and controls escaped).
pub fn json_escaped(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_string()
}

/// The base64 characters that encode `bytes` whatever their offset inside a longer encoded
/// message (three alignments; the characters shared with neighbouring bytes are left out), so a
/// secret is found inside a base64-encoded frame or blob, not only when encoded alone.
pub fn base64_in_context(bytes: &[u8]) -> Vec<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    let mut out = Vec::new();
    for pad in 0..3usize {
        let mut buf = vec![0u8; pad];
        buf.extend_from_slice(bytes);
        let encoded = b64.encode(&buf);
        // Character i covers bits [6i, 6i+6): keep those inside the secret's bits.
        let (lo, hi) = (8 * pad, 8 * (pad + bytes.len()));
        let first = lo.div_ceil(6);
        let last = match hi.checked_sub(6) {
            Some(h) => h / 6,
            None => continue,
        };
        if last >= first && last < encoded.len() {
            out.push(encoded[first..=last].to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A long secret (PAN, password, key text) in every form a log could carry it: as is,
/// JSON-escaped (once and twice: a frame logged inside a JSON log line), hex, HEX, base64 at
/// any alignment, and as a `Debug` byte array. Found anywhere (not only as a whole value).
pub fn secret_needles(label: &str, secret: &[u8]) -> Vec<Needle> {
    let mut forms: Vec<(String, Vec<u8>)> = vec![
        ("as is".into(), secret.to_vec()),
        ("hex".into(), hex(secret).into_bytes()),
        ("HEX".into(), hex(secret).to_uppercase().into_bytes()),
        ("Debug bytes".into(), debug_bytes(secret).into_bytes()),
    ];
    if let Ok(text) = std::str::from_utf8(secret) {
        let once = json_escaped(text);
        let twice = json_escaped(&once);
        forms.push(("JSON-escaped".into(), once.into_bytes()));
        forms.push(("JSON-escaped twice".into(), twice.into_bytes()));
    }
    for (i, b) in base64_in_context(secret).into_iter().enumerate() {
        forms.push((format!("base64 (alignment {i})"), b.into_bytes()));
    }
    let mut out: Vec<Needle> = Vec::new();
    for (form, bytes) in forms {
        if out.iter().any(|n| n.bytes == bytes) {
            continue;
        }
        out.push(Needle {
            what: format!("{label}, {form}"),
            bytes,
            whole: false,
        });
    }
    out
}

/// A short secret (a 3–4 digit CVC) in the forms a log carries it. As a bare number it would
/// be "found" in every timestamp (`20:41:07.739`), so it counts only where it is a value: quoted
/// (`"739"`, `'739'`, `\"739\"`), after a field name (`cvc=739`, `cvc: 739`), and as whole base64,
/// hex and `Debug` byte-array values.
pub fn short_secret_needles(label: &str, secret: &str) -> Vec<Needle> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    let mut push = |form: &str, bytes: Vec<u8>, whole: bool| {
        out.push(Needle {
            what: format!("{label}, {form}"),
            bytes,
            whole,
        })
    };
    for (form, text) in [
        ("quoted", format!("\"{secret}\"")),
        ("single-quoted", format!("'{secret}'")),
        ("JSON-escaped quoted", format!("\\\"{secret}\\\"")),
        ("cvc=", format!("cvc={secret}")),
        ("cvc: ", format!("cvc: {secret}")),
        ("cvc:", format!("cvc:{secret}")),
        ("Debug bytes", debug_bytes(secret.as_bytes())),
    ] {
        push(form, text.into_bytes(), false);
    }
    push("base64", b64.encode(secret).into_bytes(), true);
    push("hex", hex(secret.as_bytes()).into_bytes(), true);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_in_context_finds_a_secret_at_every_offset_of_a_longer_message() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let secret = b"4111111111111111";
        let forms = base64_in_context(secret);
        for prefix in ["", "a", "ab", "abc", "{\"number\":\""] {
            let message = [prefix.as_bytes(), secret, b"\"}"].concat();
            let encoded = b64.encode(&message);
            assert!(
                forms.iter().any(|f| encoded.contains(f.as_str())),
                "prefix {prefix:?}: {encoded} holds none of {forms:?}"
            );
        }
    }

    #[test]
    fn needle_forms_are_the_ones_logs_carry() {
        let n = secret_needles("pw", b"demo-password");
        let has = |s: &str| n.iter().any(|x| x.bytes == s.as_bytes());
        assert!(has("demo-password"));
        assert!(has("64656d6f2d70617373776f7264"));
        assert!(has(&format!("{:?}", b"demo-password".to_vec())));
        let n = secret_needles("pw", b"a\"b");
        assert!(n.iter().any(|x| x.bytes == b"a\\\"b"), "JSON-escaped");
        let cvc = short_secret_needles("cvc", "739");
        assert!(cvc.iter().any(|x| x.bytes == b"[55, 51, 57]"));
        let stamp = Needle {
            what: "x".into(),
            bytes: b"\"739\"".to_vec(),
            whole: false,
        };
        assert!(!contains(b"2026-12-06 20:41:07.739 UTC", &stamp));
        assert!(contains(b"{\"cvc\":\"739\"}", &stamp));
    }
}
