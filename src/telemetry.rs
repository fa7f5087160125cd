//! Logging: `tracing` with a human format by default or JSON (`log.format = "json"`), filtered
//! by `log.level` or `RUST_LOG`. Spans and events carry merchant ids, order numbers, endpoints and
//! fault names, never card data: request bodies are never logged, and secret types redact in
//! `Debug`.
//!
//! Invariant (security issue 12, finding 2): no dependency that logs wire data may log below its
//! ceiling in [`CEILINGS`], whatever `RUST_LOG` or `log.level` say. At `trace`, async-nats logs
//! whole protocol frames (card numbers, CVCs, merchant passwords) and at `debug` the server URL
//! with its password. The ceiling is a second, fixed filter layer ([`ceilings`]) that every event
//! must also pass, so no user directive (`trace`, `async_nats=trace`,
//! `async_nats::connection=trace`, span or field directives) can lift it. Events bridged from the
//! `log` crate (r2d2, nkeys, actix) carry their crate as target and are capped the same way.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, EnvFilter, Layer as _, Registry};

use crate::config::{LogFormat, LogSettings};

/// Dependency targets (crate prefixes) and the most verbose level each may ever log at. Listed:
/// every crate in the build that logs wire data, connection URLs or SQL parameters at a verbose
/// level, plus the TLS/HTTP/PostgreSQL clients a future build may add, so adding one cannot
/// silently reopen the hole.
pub const CEILINGS: &[(&str, LevelFilter)] = &[
    // Whole frames (payloads: PAN, CVC, passwords) at trace; the server URL at debug.
    ("async_nats", LevelFilter::INFO),
    // NATS nkey signing (seeds and nonces).
    ("nkeys", LevelFilter::WARN),
    // Connection pool: connection errors (our URL-redacted VaultError) at error only.
    ("r2d2", LevelFilter::WARN),
    // Query builders and drivers: statements with bound parameters.
    ("diesel", LevelFilter::WARN),
    ("tokio_postgres", LevelFilter::WARN),
    ("postgres", LevelFilter::WARN),
    ("sqlx", LevelFilter::WARN),
    // TLS: handshake details, secrets logging hooks.
    ("rustls", LevelFilter::WARN),
    ("tokio_rustls", LevelFilter::WARN),
    // HTTP stacks: headers and bodies at trace.
    ("hyper", LevelFilter::WARN),
    ("hyper_util", LevelFilter::WARN),
    ("h2", LevelFilter::WARN),
    ("axum", LevelFilter::WARN),
    ("tower_http", LevelFilter::WARN),
    ("reqwest", LevelFilter::WARN),
    // Socket readiness and raw I/O.
    ("mio", LevelFilter::WARN),
];

/// The fixed ceiling layer: every target listed in [`CEILINGS`] at its level, everything else
/// left to the user's filter.
pub fn ceilings() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CEILINGS.iter().copied())
}

/// The user's filter: `RUST_LOG` when set and valid, else `log.level`, else `info`.
pub fn user_filter(log: &LogSettings, rust_log: Option<&str>) -> EnvFilter {
    rust_log
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| EnvFilter::try_new(s).ok())
        .or_else(|| EnvFilter::try_new(&log.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// The whole subscriber: the user's filter, then the fixed ceilings, then the formatter writing
/// to `writer`.
pub fn subscriber(
    log: &LogSettings,
    rust_log: Option<&str>,
    writer: BoxMakeWriter,
) -> impl tracing::Subscriber + Send + Sync {
    let format = if log.format == LogFormat::Json {
        fmt::layer()
            .json()
            .with_writer(writer)
            .with_target(false)
            .boxed()
    } else {
        fmt::layer().with_writer(writer).with_target(false).boxed()
    };
    Registry::default()
        .with(user_filter(log, rust_log))
        .with(ceilings())
        .with(format)
}

pub fn init(log: &LogSettings) {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let _ = subscriber(
        log,
        rust_log.as_deref(),
        BoxMakeWriter::new(std::io::stderr),
    )
    .try_init();
    // Seen only at trace: lets a log scan prove the service really logged at trace.
    tracing::trace!(
        capped_targets = CEILINGS.len(),
        "trace logging on; wire-logging dependencies stay capped"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    const PAN: &str = "4111111111111111";

    /// Everything a subscriber built from `level` / `rust_log` writes while `emit` runs.
    fn captured(
        level: &str,
        rust_log: Option<&str>,
        format: LogFormat,
        emit: impl FnOnce(),
    ) -> String {
        let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buffer.clone();
        let writer = BoxMakeWriter::new(move || SharedWriter(sink.clone()));
        let log = LogSettings {
            format,
            level: level.into(),
        };
        tracing::subscriber::with_default(subscriber(&log, rust_log, writer), emit);
        let bytes = buffer.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    struct SharedWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What async-nats does at trace and debug (targets are module paths).
    fn frames() {
        tracing::trace!(target: "async_nats::connection", "PUB oneclick.v1.gw.pay {{\"number\":\"{PAN}\"}}");
        tracing::debug!(target: "async_nats::connector", "connecting to nats://oneclick:s3cret@127.0.0.1:4222");
        tracing::trace!(target: "hyper::proto", "body {PAN}");
        tracing::debug!(target: "r2d2", "params {PAN}");
        tracing::info!(target: "async_nats", "event: connected");
        tracing::trace!(target: "oneclick::surfaces", "own trace event");
    }

    #[test]
    fn no_rust_log_value_lifts_the_ceiling_of_wire_logging_crates() {
        for rust_log in [
            "trace",
            "async_nats=trace",
            "info,async_nats::connection=trace,async_nats::connector=trace",
            "trace,async_nats=trace,hyper=trace,r2d2=trace",
            "info,[{number}]=trace",
            "info,async_nats[{x}]=trace",
        ] {
            for format in [LogFormat::Human, LogFormat::Json] {
                let out = captured("trace", Some(rust_log), format, frames);
                assert!(!out.contains(PAN), "RUST_LOG={rust_log}: {out}");
                assert!(!out.contains("s3cret"), "RUST_LOG={rust_log}: {out}");
                assert!(out.contains("event: connected"), "info still passes: {out}");
            }
        }
    }

    #[test]
    fn log_level_trace_without_rust_log_is_capped_too_and_our_own_trace_still_logs() {
        let out = captured("trace", None, LogFormat::Human, frames);
        assert!(!out.contains(PAN), "{out}");
        assert!(!out.contains("s3cret"), "{out}");
        assert!(
            out.contains("own trace event"),
            "the cap is per target: {out}"
        );
    }

    #[test]
    fn the_probe_sees_a_frame_when_the_ceiling_is_absent() {
        // Control: the same events through the user's filter alone do carry the secrets, so the
        // tests above would fail without the ceiling.
        let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buffer.clone();
        let layer = fmt::layer().with_writer(move || SharedWriter(sink.clone()));
        let log = LogSettings::default();
        let sub = Registry::default()
            .with(user_filter(&log, Some("trace")))
            .with(layer);
        tracing::subscriber::with_default(sub, frames);
        let out = String::from_utf8_lossy(&buffer.lock().map(|b| b.clone()).unwrap_or_default())
            .into_owned();
        assert!(out.contains(PAN) && out.contains("s3cret"), "{out}");
    }

    #[test]
    fn an_invalid_rust_log_falls_back_to_the_configured_level() {
        let out = captured("warn", Some("=[bad"), LogFormat::Human, || {
            tracing::info!(target: "oneclick", "an info line");
            tracing::warn!(target: "oneclick", "a warning");
        });
        assert!(
            !out.contains("an info line") && out.contains("a warning"),
            "{out}"
        );
    }
}
