//! The ops HTTP endpoint: `GET /metrics` (Prometheus text) and `GET /health` (JSON; 200 when the
//! vault and NATS answer, 503 otherwise). Listens on `http.listen`; an empty value disables it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::surfaces::{health_reply, Context};

pub async fn spawn(
    listen: &str,
    ctx: Arc<Context>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if listen.is_empty() {
        return Ok(tokio::spawn(async {}));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("http.listen {listen}: {e}"))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(ctx);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await });
        if let Err(e) = served.await {
            tracing::warn!(error = %e, "http server ended");
        }
    }))
}

async fn metrics(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    ctx.metrics.render(crate::metrics::EngineGauges {
        active_customers: ctx.engine.active_customers(),
        pool: ctx.engine.pool_state(),
        batches: ctx.engine.batch_stats(),
        round_trips: oneclick_actors::vault::connection::round_trips(),
        login: ctx.engine.login_counters(),
    })
}

async fn health(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    match health_reply(&ctx).await {
        Ok(body) => {
            let ok = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(|s| s == "ok"))
                .unwrap_or(false);
            let code = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (code, [("content-type", "application/json")], body).into_response()
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
