//! `plot.svg`: throughput and p99 latency against concurrency, one line per (backend, scenario)
//! and per baseline (dashed); `latency.svg`: a latency CDF per scenario from the windows' HDR
//! histograms. Written by hand (a few dozen SVG elements) rather than pulling a plotting library
//! into the workspace.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::Record;

const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#393b79", "#637939",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn fmt_tick(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}k", (v / 1000.0 * 10.0).round() / 10.0)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// The SVG text; `None` when nothing was swept.
pub fn svg(records: &[Record], title: &str) -> Option<String> {
    let mut series: BTreeMap<String, Vec<(usize, f64, f64)>> = BTreeMap::new();
    for r in records.iter().filter(|r| {
        matches!(
            r.group.as_str(),
            "oneclick" | "nats-echo" | "db-baseline" | "db-grouped" | "pgbench" | "peer"
        )
    }) {
        series
            .entry(r.key())
            .or_default()
            .push((r.concurrency, r.throughput, r.latency_ms.p99));
    }
    if series.is_empty() {
        return None;
    }
    let mut xs: Vec<usize> = series.values().flatten().map(|p| p.0).collect();
    xs.sort_unstable();
    xs.dedup();
    let (pw, ph, top, left1, left2) = (480.0, 330.0, 60.0, 80.0, 680.0);
    let legend_rows = series.len().div_ceil(2);
    let height = top + ph + 70.0 + legend_rows as f64 * 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="1240" height="{height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="620" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        esc(title)
    );
    let x_at = |left: f64, c: usize| {
        let i = xs.iter().position(|x| *x == c).unwrap_or(0) as f64;
        if xs.len() <= 1 {
            left + pw / 2.0
        } else {
            left + 30.0 + i * (pw - 60.0) / (xs.len() - 1) as f64
        }
    };
    for (panel, (left, label, pick)) in [
        (left1, "throughput (requests/s)", 1usize),
        (left2, "p99 latency (ms)", 2usize),
    ]
    .into_iter()
    .enumerate()
    {
        let value = |p: &(usize, f64, f64)| if pick == 1 { p.1 } else { p.2 };
        // Log scale: oneclick's payments, its reads and the NATS echo differ by 100×.
        let positive: Vec<f64> = series
            .values()
            .flatten()
            .map(value)
            .filter(|v| *v > 0.0)
            .collect();
        let lo = positive
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .max(1e-3)
            .log10()
            .floor();
        let hi = positive
            .iter()
            .copied()
            .fold(0.0, f64::max)
            .max(1e-3)
            .log10()
            .ceil()
            .max(lo + 1.0);
        let y_at = |v: f64| top + ph - (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo) * ph;
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">{label}, log scale</text>"#,
            left + pw / 2.0,
            top - 10.0
        );
        log_grid(&mut s, lo, hi, left, pw, &y_at);
        for c in &xs {
            let x = x_at(left, *c);
            let _ = writeln!(
                s,
                r#"<text x="{x}" y="{}" text-anchor="middle">{c}</text>"#,
                top + ph + 18.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">concurrency (requests in flight)</text>"#,
            left + pw / 2.0,
            top + ph + 38.0
        );
        for (i, (name, points)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let dash = if name.starts_with("oneclick") {
                ""
            } else {
                r#" stroke-dasharray="6 4""#
            };
            let mut pts: Vec<&(usize, f64, f64)> = points.iter().collect();
            pts.sort_by_key(|p| p.0);
            let path: Vec<String> = pts
                .iter()
                .map(|p| format!("{:.1},{:.1}", x_at(left, p.0), y_at(value(p))))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                path.join(" ")
            );
            for p in pts {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                    x_at(left, p.0),
                    y_at(value(p))
                );
            }
            if panel == 0 {
                let lx = 80.0 + (i % 2) as f64 * 600.0;
                let ly = top + ph + 62.0 + (i / 2) as f64 * 20.0;
                let _ = writeln!(
                    s,
                    r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>"#,
                    lx + 28.0
                );
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{}">{}</text>"#,
                    lx + 34.0,
                    ly + 4.0,
                    esc(name)
                );
            }
        }
    }
    s.push_str("</svg>\n");
    Some(s)
}

/// Which scenario's panel a window's CDF goes to: the baselines join the scenario they are
/// compared with (the plain and engine payments, pay-token; the peer's add card, register; its
/// retrieve and the NATS echo, token-list).
fn cdf_panel(r: &Record) -> Option<String> {
    let family = match r.group.as_str() {
        "oneclick" => r.scenario.clone(),
        "oneclick-paced" | "db-baseline" | "db-grouped" | "pgbench" => "pay-token".into(),
        "peer" if r.scenario == "add card" => "register".into(),
        "peer" | "nats-echo" => "token-list".into(),
        _ => return None,
    };
    Some(format!("{} {family}", r.backend.as_deref().unwrap_or("-")))
}

/// `latency.svg`: one panel per (backend, scenario), the latency CDF of each window at the
/// highest concurrency (and the paced half-peak run) from its HDR histogram: latency (log
/// scale) against the percentile on a "nines" scale (50 %, 90 %, 99 %, … 99.999 %), baselines
/// dashed. `None` when no window has latencies.
pub fn cdf_svg(records: &[Record]) -> Option<String> {
    let top_c = records
        .iter()
        .filter(|r| r.group == "oneclick")
        .map(|r| r.concurrency)
        .max()?;
    let mut panels: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records {
        if r.cdf.is_empty() || (r.group != "oneclick-paced" && r.concurrency != top_c) {
            continue;
        }
        if let Some(p) = cdf_panel(r) {
            panels.entry(p).or_default().push(r);
        }
    }
    if panels.is_empty() {
        return None;
    }
    let (pw, ph, cols) = (500.0, 260.0, 2usize);
    let legend_rows = panels.values().map(Vec::len).max().unwrap_or(0);
    let cell_h = 40.0 + ph + 40.0 + legend_rows as f64 * 16.0 + 20.0;
    let cell_w = pw + 120.0;
    let rows = panels.len().div_ceil(cols);
    let width = cell_w * cols as f64;
    let height = 50.0 + rows as f64 * cell_h;
    // The x axis: nines of the percentile, log10(1 / (1 - q)), up to 99.999 %.
    let x_max = 5.0;
    let nines = |q: f64| (1.0 / (1.0 - q).max(1e-5)).log10().min(x_max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="26" text-anchor="middle" font-size="15">Latency CDF per scenario at c={top_c} (HDR histograms; paced half-peak runs included; baselines dashed)</text>"#,
        width / 2.0
    );
    for (i, (name, recs)) in panels.iter().enumerate() {
        let left = 80.0 + (i % cols) as f64 * cell_w;
        let top = 50.0 + 30.0 + (i / cols) as f64 * cell_h;
        let values: Vec<f64> = recs
            .iter()
            .flat_map(|r| r.cdf.iter().filter(|p| p.0 < 1.0).map(|p| p.1))
            .filter(|v| *v > 0.0)
            .collect();
        let lo = values
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .max(1e-3)
            .log10()
            .floor();
        let hi = values
            .iter()
            .copied()
            .fold(0.0, f64::max)
            .max(1e-3)
            .log10()
            .ceil()
            .max(lo + 1.0);
        let y_at = |v: f64| top + ph - (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo) * ph;
        let x_at = |q: f64| left + nines(q) / x_max * pw;
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">{}: latency (ms, log scale) by percentile</text>"#,
            left + pw / 2.0,
            top - 10.0,
            esc(name)
        );
        log_grid(&mut s, lo, hi, left, pw, &y_at);
        for (q, label) in [
            (0.0, "0"),
            (0.9, "90"),
            (0.99, "99"),
            (0.999, "99.9"),
            (0.9999, "99.99"),
            (0.99999, "99.999"),
        ] {
            let x = x_at(q);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{}" stroke="#eee"/>"##,
                top + ph
            );
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"#,
                top + ph + 16.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">percentile (%)</text>"#,
            left + pw / 2.0,
            top + ph + 32.0
        );
        for (j, r) in recs.iter().enumerate() {
            let color = COLORS[j % COLORS.len()];
            let dash = if r.group.starts_with("oneclick") {
                ""
            } else {
                r#" stroke-dasharray="6 4""#
            };
            let pts: Vec<String> = r
                .cdf
                .iter()
                .filter(|p| p.0 < 1.0 && (p.0 == 0.0 || p.0 <= 1.0 - 1.0 / r.samples.max(1) as f64))
                .map(|p| format!("{:.1},{:.1}", x_at(p.0), y_at(p.1)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                pts.join(" ")
            );
            let ly = top + ph + 52.0 + j as f64 * 16.0;
            let _ = writeln!(
                s,
                r#"<line x1="{left}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>"#,
                left + 28.0
            );
            let what = match r.target_rate {
                Some(rate) => format!("{} ({rate:.0}/s offered)", r.key()),
                None => format!("{} c={}", r.key(), r.concurrency),
            };
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}">{} — p50 {:.2}, p99 {:.2}, p99.9 {:.2} ms, {} samples</text>"#,
                left + 34.0,
                ly + 4.0,
                esc(&what),
                r.latency_ms.p50,
                r.latency_ms.p99,
                r.latency_ms.p999,
                r.samples
            );
        }
    }
    s.push_str("</svg>\n");
    Some(s)
}

/// The horizontal grid of a log-scale y axis: lines and labels at 1, 2 and 5 of each decade from
/// `10^lo` to `10^hi` (1 darker).
fn log_grid(s: &mut String, lo: f64, hi: f64, left: f64, pw: f64, y_at: &dyn Fn(f64) -> f64) {
    let mut decade = lo;
    while decade <= hi {
        for (m, major) in [(1.0, true), (2.0, false), (5.0, false)] {
            let v = m * 10f64.powf(decade);
            if v > 10f64.powf(hi) * 1.001 {
                continue;
            }
            let y = y_at(v);
            let stroke = if major { "#ccc" } else { "#eee" };
            let _ = writeln!(
                s,
                r#"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="{stroke}"/>"#,
                left + pw
            );
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                left - 6.0,
                y + 4.0,
                fmt_tick(v)
            );
        }
        decade += 1.0;
    }
}
