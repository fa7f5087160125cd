//! Prometheus metrics: requests and commands by kind and outcome, latency histograms, payments by
//! state and response code, JetStream redeliveries and dead letters, active customer actors.
//! Requests dropped because their reply subject did not belong to their caller (issue 12).
//! Labels are endpoint names, kinds, fault names and codes: never merchant input or card data.

use std::time::Duration;

use oneclick_actors::engine::merchants::LoginCounters;
use oneclick_actors::engine::replies::PaymentResult;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    payments: IntCounterVec,
    commands: IntCounterVec,
    redeliveries: IntCounterVec,
    dead_letters: IntCounterVec,
    replies_refused: IntCounterVec,
    active_customers: IntGauge,
    pool_connections: IntGauge,
    pool_idle: IntGauge,
    batches: IntGauge,
    batch_steps: IntGauge,
    round_trips: IntGauge,
    login: LoginMetrics,
}

/// The merchant-login defences (docs/security/login.md), copied from the engine's counters at
/// scrape time.
struct LoginMetrics {
    lockouts: IntCounter,
    locked_refusals: IntCounter,
    throttled: IntCounter,
    argon2_runs: IntCounter,
    argon2_in_flight: IntGauge,
    argon2_peak: IntGauge,
}

impl LoginMetrics {
    fn new(registry: &Registry) -> LoginMetrics {
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        LoginMetrics {
            lockouts: counter(
                "login_lockouts_total",
                "Merchant (login, source) pairs locked after repeated failed logins",
            ),
            locked_refusals: counter(
                "login_locked_refusals_total",
                "Merchant requests refused because their login and source were locked",
            ),
            throttled: counter(
                "login_throttled_total",
                "Merchant requests refused by the login throttle before argon2",
            ),
            argon2_runs: counter(
                "login_argon2_verifications_total",
                "argon2 password verifications started",
            ),
            argon2_in_flight: gauge(
                "login_argon2_in_flight",
                "argon2 verifications running now (bounded by login.argon2_concurrency)",
            ),
            argon2_peak: gauge(
                "login_argon2_in_flight_peak",
                "Most argon2 verifications ever running at once in this process",
            ),
        }
    }

    fn set(&self, c: &LoginCounters) {
        let catch_up = |counter: &IntCounter, value: u64| {
            counter.inc_by(value.saturating_sub(counter.get()));
        };
        catch_up(&self.lockouts, c.lockouts);
        catch_up(&self.locked_refusals, c.locked_refusals);
        catch_up(&self.throttled, c.throttled);
        catch_up(&self.argon2_runs, c.argon2_runs);
        self.argon2_in_flight.set(c.argon2_in_flight as i64);
        self.argon2_peak.set(c.argon2_peak as i64);
    }
}

/// Gauges read from the engine at scrape time.
pub struct EngineGauges {
    pub active_customers: usize,
    pub pool: (u32, u32),
    /// (transactions, payment steps, failed batches)
    pub batches: (u64, u64, u64),
    /// Database round trips of the vault's pooled connections (`vault::connection::round_trips`).
    pub round_trips: u64,
    pub login: LoginCounters,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("oneclick".into()), None).unwrap_or_default();
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Request-reply requests by endpoint and outcome (ok or fault name)",
            ),
            &["endpoint", "outcome"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("request_seconds", "Request handling time by endpoint").buckets(
                vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let payments = IntCounterVec::new(
            Opts::new(
                "payments_total",
                "Payment results by kind, order state and response code",
            ),
            &["kind", "state", "code"],
        )
        .expect("valid metric");
        let commands = IntCounterVec::new(
            Opts::new(
                "commands_total",
                "Durable JetStream commands by kind and outcome",
            ),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        let redeliveries = IntCounterVec::new(
            Opts::new(
                "jetstream_redeliveries_total",
                "Commands received again after a failed or unacknowledged delivery",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let dead_letters = IntCounterVec::new(
            Opts::new("dead_letters_total", "Commands given up after max_deliver"),
            &["kind"],
        )
        .expect("valid metric");
        let replies_refused = IntCounterVec::new(
            Opts::new(
                "replies_refused_total",
                "Requests dropped unanswered because their reply subject did not belong to the \
                 caller their subject names (by endpoint and caller kind)",
            ),
            &["endpoint", "caller"],
        )
        .expect("valid metric");
        let active_customers = IntGauge::new(
            "active_customer_actors",
            "Customer actors alive in this process",
        )
        .expect("valid metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let pool_connections = gauge(
            "vault_pool_connections",
            "Open connections of the vault pool",
        );
        let pool_idle = gauge(
            "vault_pool_idle_connections",
            "Idle connections of the vault pool",
        );
        let batches = gauge(
            "group_commit_transactions",
            "Group-commit transactions since start",
        );
        let batch_steps = gauge(
            "group_commit_steps",
            "Payment steps written by group commit since start",
        );
        let round_trips = gauge(
            "vault_round_trips",
            "Database round trips of the vault's pooled connections since start (statements and preparations)",
        );
        for g in [
            &pool_connections,
            &pool_idle,
            &batches,
            &batch_steps,
            &round_trips,
        ] {
            let _ = registry.register(Box::new(g.clone()));
        }
        for c in [
            &requests,
            &payments,
            &commands,
            &redeliveries,
            &dead_letters,
            &replies_refused,
        ] {
            let _ = registry.register(Box::new(c.clone()));
        }
        let _ = registry.register(Box::new(latency.clone()));
        let _ = registry.register(Box::new(active_customers.clone()));
        let login = LoginMetrics::new(&registry);
        Metrics {
            login,
            registry,
            requests,
            latency,
            payments,
            commands,
            redeliveries,
            dead_letters,
            replies_refused,
            active_customers,
            pool_connections,
            pool_idle,
            batches,
            batch_steps,
            round_trips,
        }
    }

    pub fn observe_request(&self, endpoint: &str, outcome: &str, elapsed: Duration) {
        self.requests.with_label_values(&[endpoint, outcome]).inc();
        self.latency
            .with_label_values(&[endpoint])
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_payment(&self, result: &PaymentResult) {
        self.payments
            .with_label_values(&[
                result.kind.as_str(),
                result.order_state.as_str(),
                result.response_code.as_str(),
            ])
            .inc();
    }

    pub fn observe_command(&self, kind: &str, outcome: &str) {
        self.commands.with_label_values(&[kind, outcome]).inc();
    }

    pub fn observe_redelivery(&self, kind: &str) {
        self.redeliveries.with_label_values(&[kind]).inc();
    }

    pub fn observe_dead_letter(&self, kind: &str) {
        self.dead_letters.with_label_values(&[kind]).inc();
    }

    /// A request dropped by the reply-subject check (`caller`: gateway, merchant, anyone).
    pub fn observe_refused_reply(&self, endpoint: &str, caller: &str) {
        self.replies_refused
            .with_label_values(&[endpoint, caller])
            .inc();
    }

    /// The text exposition, with gauges refreshed.
    pub fn render(&self, engine: EngineGauges) -> String {
        self.active_customers.set(engine.active_customers as i64);
        self.pool_connections.set(i64::from(engine.pool.0));
        self.pool_idle.set(i64::from(engine.pool.1));
        self.batches.set(engine.batches.0 as i64);
        self.batch_steps.set(engine.batches.1 as i64);
        self.round_trips.set(engine.round_trips as i64);
        self.login.set(&engine.login);
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
