//! Latency you can look at: every measured window keeps an HDR histogram (the `hdrhistogram`
//! crate, 1 µs – 10 min at 3 significant digits, see `load.rs`). From it the report takes
//! percentiles up to p99.99, `results.json` a CDF at fixed quantiles (what `latency.svg` plots),
//! and `latency/<window>.hgrm` the full percentile distribution in HdrHistogram's text format
//! (the one its plotters read).

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// The quantiles of the CDF kept per window: dense toward the tail, where the nines are.
pub const QUANTILES: &[f64] = &[
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99,
    0.995, 0.997, 0.999, 0.9995, 0.9999, 0.99995, 0.99999, 1.0,
];

/// (quantile, latency in ms) at [`QUANTILES`]; empty for an empty histogram.
pub fn cdf(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    QUANTILES
        .iter()
        .map(|&q| {
            let us = if q >= 1.0 {
                h.max()
            } else {
                h.value_at_quantile(q)
            };
            (q, us as f64 / 1000.0)
        })
        .collect()
}

/// The percentile distribution in HdrHistogram's `.hgrm` text format, values in milliseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inverse = if q < 1.0 {
            format!("{:>14.2}", 1.0 / (1.0 - q))
        } else {
            format!("{:>14}", "inf")
        };
        let _ = writeln!(
            s,
            "{:>12.3} {:>14.12} {:>10} {inverse}",
            v.value_iterated_to() as f64 / 1000.0,
            q,
            total
        );
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / 1000.0,
        h.len()
    );
    s
}

/// A file name for a window's label (`postgres pay-token c=32` → `postgres_pay-token_c32`).
pub fn file_stem(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
            out.push(c);
        } else if !out.ends_with('_') && c != '=' {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cdf_rises_to_the_maximum_and_the_hgrm_counts_every_sample() {
        let mut h = crate::load::histogram();
        for us in 1..=10_000u64 {
            h.record(us).expect("in range");
        }
        let c = cdf(&h);
        assert_eq!(c.len(), QUANTILES.len());
        assert!(c.windows(2).all(|w| w[0].1 <= w[1].1), "{c:?}");
        assert_eq!(c.last().map(|p| p.1), Some(h.max() as f64 / 1000.0));
        let p50 = c.iter().find(|p| p.0 == 0.5).map(|p| p.1).unwrap_or(0.0);
        assert!((p50 - 5.0).abs() < 0.01, "{p50}");
        let text = hgrm(&h);
        assert!(text.contains("Total count    =        10000"), "{text}");
        assert!(cdf(&crate::load::histogram()).is_empty());
        assert_eq!(
            file_stem("postgres pay-token c=32"),
            "postgres_pay-token_c32"
        );
    }
}
