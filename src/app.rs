//! The application: builds everything from [`Settings`] and runs until a shutdown signal.
//!
//! `Application::build(settings)` opens the vault (running pending migrations), loads the keys,
//! starts the engine, connects to NATS, creates the JetStream streams and consumers (idempotently)
//! and registers the service endpoints. `run_until_stopped(signal)` serves until `signal`
//! resolves, then drains: endpoints stop taking requests, durable consumers stop pulling,
//! in-flight requests and commands finish (bounded by `service.shutdown_grace_secs`), NATS is
//! flushed, and it returns.
//!
//! Must run inside an actix `System` (see `main.rs`), because the engine is made of actors.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use oneclick_actors::acquirer::{Acquirer, Simulator};
use oneclick_actors::crypto::Keyring;
use oneclick_actors::vault::DatabaseUrl;
use oneclick_actors::Engine;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{NatsSettings, Settings};
use crate::metrics::Metrics;
use crate::subjects::Subjects;

/// A built, not yet running, application.
pub struct Application {
    pub settings: Settings,
    pub engine: Engine,
    pub client: async_nats::Client,
    pub subjects: Subjects,
    pub metrics: Arc<Metrics>,
}

/// Loads the keyring from the `[keys]` settings: a key file, or env/config values. Never the DB.
pub fn load_keyring(settings: &Settings) -> anyhow::Result<Keyring> {
    crate::keys::load(&settings.keys)
}

/// Connects to NATS with the configured credentials and TLS settings.
pub async fn connect_nats(settings: &Settings) -> anyhow::Result<async_nats::Client> {
    let options = async_nats::ConnectOptions::new()
        .name(&settings.service.name)
        .connection_timeout(Duration::from_secs(5));
    let options = nats_security(options, &settings.nats).await?;
    // No server at start is a clear start-up error (compose starts NATS first); once connected,
    // the client reconnects by itself. The URL is never printed: it is validated to carry no
    // credentials, but the error stays generic anyway.
    let client = options
        .connect(settings.nats.server_urls())
        .await
        .context("connecting to NATS")?;
    tracing::info!(identity = %settings.nats.identity(), tls = %settings.nats.tls_description(), "connected to NATS");
    Ok(client)
}

/// Adds the configured credentials (one of user+password, token, NKey seed file, `.creds` file)
/// and TLS (a CA to verify the server against, TLS required) to `options`. Shared by the service
/// and `oneclick client`, so both present the identity `admin config check` prints.
pub async fn nats_security(
    mut options: async_nats::ConnectOptions,
    nats: &NatsSettings,
) -> anyhow::Result<async_nats::ConnectOptions> {
    if let (Some(user), Some(password)) = (&nats.user, &nats.password) {
        options = options.user_and_password(user.clone(), password.expose().to_string());
    } else if let Some(token) = &nats.token {
        options = options.token(token.expose().to_string());
    } else if let Some(file) = &nats.nkey_seed_file {
        let seed = zeroize::Zeroizing::new(
            std::fs::read_to_string(file)
                .with_context(|| format!("nats.nkey_seed_file: reading {}", file.display()))?,
        );
        options = options.nkey(seed.trim().to_string());
    } else if let Some(file) = &nats.creds_file {
        options = options
            .credentials_file(file)
            .await
            .with_context(|| format!("nats.creds_file: reading {}", file.display()))?;
    }
    if let Some(ca) = &nats.tls_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    } else if nats.tls_required {
        options = options.require_tls(true);
    }
    Ok(options)
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        settings.validate()?;
        let url = DatabaseUrl::parse(&settings.database.url)?
            .with_sqlite_synchronous(settings.database.sqlite_synchronous);
        let migrated = url.run_migrations().context("running vault migrations")?;
        if migrated > 0 {
            tracing::info!(migrated, "vault migrations applied");
        }
        let pool = url
            .pool(settings.database.pool_size)
            .context("opening the vault pool")?;
        let keyring = Arc::new(load_keyring(&settings)?);
        let client = connect_nats(&settings).await?;
        let acquirer: Arc<dyn Acquirer> = match settings.acquirer.kind.as_str() {
            "nats" => Arc::new(crate::acquirer_nats::NatsAcquirer::new(
                client.clone(),
                settings.acquirer.nats_subject.clone(),
                Duration::from_millis(settings.acquirer.timeout_ms),
            )),
            _ => Arc::new(Simulator::new(Duration::from_millis(
                settings.acquirer.simulator_latency_ms,
            ))),
        };
        let engine = Engine::start(settings.engine_settings(), pool, keyring, acquirer);
        let subjects = Subjects::new(&settings.nats.prefix);
        let metrics = Arc::new(Metrics::new());
        Ok(Application {
            settings,
            engine,
            client,
            subjects,
            metrics,
        })
    }

    /// Serves until `shutdown` resolves, then drains (see the module header).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ctx = Arc::new(crate::surfaces::Context {
            engine: self.engine.clone(),
            client: self.client.clone(),
            subjects: self.subjects.clone(),
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            tracker: tracker.clone(),
            stop: stop.clone(),
        });
        crate::surfaces::start(ctx.clone()).await?;
        let http =
            crate::http::spawn(&self.settings.http.listen, ctx.clone(), stop.clone()).await?;
        tracing::info!(prefix = %self.settings.nats.prefix, "oneclick is serving");

        shutdown.await;
        tracing::info!("shutdown requested: draining");
        // Endpoints drain their subscriptions (fenced unsubscribe, buffered requests still
        // answered); consumers stop pulling; nothing new is taken.
        stop.cancel();
        tracker.close();
        let grace = Duration::from_secs(self.settings.service.shutdown_grace_secs);
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(in_flight = tracker.len(), "grace period over with work in flight; unacknowledged commands will be redelivered");
        }
        if let Err(e) = self.client.flush().await {
            tracing::warn!(error = %e, "flushing NATS");
        }
        http.abort();
        tracing::info!("oneclick stopped");
        Ok(())
    }
}
