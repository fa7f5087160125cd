//! The card-data scan: every form in which a PAN or CVC must never be found, and the places to
//! look (every value and row of a PostgreSQL database, every file under a directory).
//!
//! Shared by the test suite (`tests/support`) and the chaos binary's card sweep
//! (`chaos/src/scenarios/card_sweep.rs` includes this file by path), so both look for the same
//! needles the same way. It depends only on `base64` and `sha2`.

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
