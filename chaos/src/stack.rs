//! A scenario's own stack: a private nats-server, a database (a private PostgreSQL cluster when
//! the scenario restarts PostgreSQL, else a fresh database on the machine's server), and one or
//! more oneclick instances sharing the subject prefix and the key file; plus the load
//! generator's NATS client.

use std::sync::{Arc, Mutex};

use async_nats::jetstream;

use crate::client::{self, ClientEvents, Sql};
use crate::procs::{FreshDb, Nats, OneClick, PgCluster};

pub struct StackOptions {
    pub instances: usize,
    /// A private cluster made with initdb (scenarios that restart PostgreSQL).
    pub private_pg: bool,
    /// Extra `ONECLICK__…` settings for every instance.
    pub env: Vec<(String, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            instances: 1,
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
    pub nats: Arc<Mutex<Nats>>,
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
        let nats = Nats::start(out)?;
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
        let prefix = "chaos".to_string();
        let keys = out.join("keys.txt");
        let mut apps = Vec::new();
        for i in 0..opts.instances.max(1) {
            let mut app = OneClick::prepare(
                &format!("oneclick-{i}"),
                out,
                &nats.url(),
                &db_url,
                &prefix,
                &keys,
            )?;
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
        let (client, client_events) = client::connect(&nats.url()).await?;
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
