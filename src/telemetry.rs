//! Logging: `tracing` with a human format by default or JSON (`log.format = "json"`), filtered
//! by `log.level` or `RUST_LOG`. Spans and events carry merchant ids, order numbers, endpoints and
//! fault names, never card data: request bodies are never logged, and secret types redact in
//! `Debug`.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogSettings;

pub fn init(log: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
