//! A scenario's own stack: a private nats-server — or, with `--cluster`, the shipped 3-node NATS
//! cluster (testkit's `NatsCluster`: deploy/nats/cluster/*.conf with its users and permissions,
//! streams R3) —, a database (a private PostgreSQL cluster when the scenario restarts PostgreSQL,
//! else a fresh database on the machine's server), and one or more oneclick instances sharing the
//! subject prefix and the key file; plus the load generator's NATS client.

use std::sync::{Arc, Mutex};

use async_nats::jetstream;

use oneclick_testkit::nats_cluster::NatsCluster;

use crate::client::{self, ClientEvents, Sql};
use crate::procs::{FreshDb, Nats, OneClick, PgCluster};

/// The NATS servers of a stack.
pub enum Backbone {
    /// One private `nats-server -js`, no authentication.
    Single(Nats),
    /// The shipped 3-node cluster: the service logs in as `oneclick` (shipped permissions), the
    /// load generator as the test-only `auditor` (it also reads the streams back).
    Cluster(NatsCluster),
}

impl Backbone {
    /// The client URL(s), comma-separated.
    pub fn urls(&self) -> String {
        match self {
            Backbone::Single(n) => n.url(),
            Backbone::Cluster(c) => c.urls(),
        }
    }

    /// The single server (scenarios that restart it).
    pub fn single(&mut self) -> anyhow::Result<&mut Nats> {
        match self {
            Backbone::Single(n) => Ok(n),
            Backbone::Cluster(_) => anyhow::bail!("this scenario needs a single nats-server"),
        }
    }

    pub fn cluster(&mut self) -> anyhow::Result<&mut NatsCluster> {
        match self {
            Backbone::Cluster(c) => Ok(c),
            Backbone::Single(_) => anyhow::bail!("this scenario needs --cluster"),
        }
    }
}

pub struct StackOptions {
    pub instances: usize,
    /// The shipped 3-node NATS cluster instead of one server (`--cluster`).
    pub cluster: bool,
    /// A private cluster made with initdb (scenarios that restart PostgreSQL).
    pub private_pg: bool,
    /// Extra `ONECLICK__…` settings for every instance.
    pub env: Vec<(String, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            instances: 1,
            cluster: false,
            private_pg: false,
            env: Vec::new(),
        }
    }
}

pub struct Stack {
    pub prefix: String,
    pub apps: Arc<Mutex<Vec<OneClick>>>,
    pub client: async_nats::Client,
    pub client_events: Arc<ClientEvents>,
    pub js: jetstream::Context,
    pub db_url: String,
    pub nats: Arc<Mutex<Backbone>>,
    pub pg: Option<Arc<Mutex<PgCluster>>>,
    _fresh: Option<FreshDb>,
}

impl Stack {
    /// Starts everything; `setup` runs `oneclick admin …` commands (through the first instance's
    /// settings) after migrations and the demo merchant, before any instance serves.
    pub async fn start(
        out: &std::path::Path,
        opts: StackOptions,
        setup: impl FnOnce(&OneClick) -> anyhow::Result<()>,
    ) -> anyhow::Result<Stack> {
        let nats = if opts.cluster {
            Backbone::Cluster(tokio::task::block_in_place(NatsCluster::start_shipped))
        } else {
            Backbone::Single(Nats::start(out)?)
        };
        let (pg, fresh, db_url) = if opts.private_pg {
            let pg = PgCluster::create()?;
            let db = FreshDb::create(&pg.admin_url())?;
            let url = db.url.clone();
            // The database lives and dies with the private cluster.
            std::mem::forget(db);
            (Some(pg), None, url)
        } else {
            let db = FreshDb::create(&FreshDb::machine_admin_url())?;
            let url = db.url.clone();
            (None, Some(db), url)
        };
        // The shipped permissions name the subjects and streams of the prefix "oneclick".
        let prefix = if opts.cluster { "oneclick" } else { "chaos" }.to_string();
        let keys = out.join("keys.txt");
        let mut apps = Vec::new();
        for i in 0..opts.instances.max(1) {
            let mut app = OneClick::prepare(
                &format!("oneclick-{i}"),
                out,
                &nats.urls(),
                &db_url,
                &prefix,
                &keys,
            )?;
            if let Backbone::Cluster(c) = &nats {
                app.set_env("ONECLICK__NATS__USER", "oneclick");
                app.set_env("ONECLICK__NATS__PASSWORD", &c.users.oneclick);
                app.set_env("ONECLICK__NATS__STREAM_REPLICAS", "3");
            }
            for (k, v) in &opts.env {
                app.set_env(k, v);
            }
            apps.push(app);
        }
        apps[0].admin(&["migrate"])?;
        apps[0].admin(&["demo-seed"])?;
        setup(&apps[0])?;
        for app in apps.iter_mut() {
            app.start()?;
        }
        let auditor = match &nats {
            Backbone::Cluster(c) => Some(c.auditor.clone()),
            Backbone::Single(_) => None,
        };
        let (client, client_events) = client::connect(
            &nats.urls(),
            auditor.as_deref().map(|password| ("auditor", password)),
        )
        .await?;
        let js = jetstream::new(client.clone());
        Ok(Stack {
            prefix,
            apps: Arc::new(Mutex::new(apps)),
            client,
            client_events,
            js,
            db_url,
            nats: Arc::new(Mutex::new(nats)),
            pg: pg.map(|p| Arc::new(Mutex::new(p))),
            _fresh: fresh,
        })
    }

    pub fn subject(&self, tail: &str) -> String {
        format!("{}.v1.{tail}", self.prefix)
    }

    pub fn sql(&self) -> anyhow::Result<Sql> {
        Sql::open(&self.db_url)
    }

    /// Scrapes every running instance's counters.
    pub fn scrape(&self) {
        if let Ok(mut apps) = self.apps.lock() {
            for a in apps.iter_mut() {
                a.scrape();
            }
        }
    }

    /// A counter summed over every instance and every process it ran.
    pub fn counter(&self, name: &str) -> f64 {
        self.apps
            .lock()
            .map(|a| a.iter().map(|x| x.counter(name)).sum())
            .unwrap_or(0.0)
    }

    /// Starts a thread scraping `/metrics` every `every` until `stop` is set.
    pub fn spawn_scraper(
        &self,
        stop: Arc<std::sync::atomic::AtomicBool>,
        every: std::time::Duration,
    ) -> std::thread::JoinHandle<()> {
        let apps = self.apps.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut a) = apps.lock() {
                    for x in a.iter_mut() {
                        x.scrape();
                    }
                }
                std::thread::sleep(every);
            }
        })
    }
}
