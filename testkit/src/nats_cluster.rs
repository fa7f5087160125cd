//! A 3-node NATS cluster on loopback from the SHIPPED cluster files: each node runs
//! `deploy/nats/cluster/nats-<n>.conf`, which includes `../nats.conf` (users, permissions and
//! JetStream settings defined once), with fresh random passwords, a route password and the route
//! URLs in the environment as docker-compose.yml gives them. The only rewrites are whole lines,
//! as in [`super::nats::shipped_nats_conf`]: in nats.conf the client port, the monitoring port
//! and the store; the generated merchants.conf (made by the real `oneclick admin merchant
//! nats-identity`, [`super::nats::write_shipped_nats_files`]) gets one test-only user `auditor`
//! with every right (first in its `users: [`) for harnesses that read the streams back; in the node file the route listener `0.0.0.0:6222` →
//! `127.0.0.1:<port>` (all three nodes share one host here, so every port is picked free). Each
//! node can be killed (-9) and restarted on the same ports and store.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

/// `GET path` over HTTP/1.0 on `127.0.0.1:port` (connect 300 ms, read 2 s): the whole response,
/// or `None`. Shared by the harnesses that read monitoring, health and metrics endpoints.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(300),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

use super::nats::{
    free_port, rewrite_shipped, shipped_nats_conf_rewrites, write_shipped_nats_files, NatsServer,
    ShippedUsers,
};

pub const NODES: usize = 3;

pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
    /// Monitoring port of each node (`/healthz`, `/jsz`).
    pub http_ports: Vec<u16>,
    pub users: ShippedUsers,
    /// Password of the test-only user `auditor` (every right), added to each node's generated
    /// merchants.conf so a harness can read the streams back; the shipped users are unchanged.
    pub auditor: String,
}

impl NatsCluster {
    /// Starts the three shipped nodes and waits until each reports healthy (routes up and a
    /// JetStream meta leader elected).
    ///
    /// The nine ports are picked free and released before the nodes bind them, so a parallel
    /// test can take one in between and a node dies with "address already in use": then the
    /// whole cluster starts again on fresh ports (at most three attempts; any other failure
    /// panics at once).
    pub fn start_shipped() -> NatsCluster {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match std::panic::catch_unwind(Self::start_shipped_once) {
                Ok(cluster) => return cluster,
                Err(e) => {
                    let text = e
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| e.downcast_ref::<&str>().copied())
                        .unwrap_or("");
                    if attempt == ATTEMPTS || !text.contains("address already in use") {
                        std::panic::resume_unwind(e);
                    }
                    eprintln!("NatsCluster: a port was taken meanwhile (attempt {attempt}); starting again on fresh ports");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn start_shipped_once() -> NatsCluster {
        let users = ShippedUsers::random();
        let auditor = format!("au{}", uuid::Uuid::new_v4().simple());
        let route_password = format!("rt{}", uuid::Uuid::new_v4().simple());
        // Nine distinct ports (a port freed by one pick can come back from the next).
        let mut picked = std::collections::BTreeSet::new();
        let mut pick = || loop {
            let p = free_port();
            if picked.insert(p) {
                return p;
            }
        };
        let ports: Vec<u16> = (0..NODES).map(|_| pick()).collect();
        let http_ports: Vec<u16> = (0..NODES).map(|_| pick()).collect();
        let route_ports: Vec<u16> = (0..NODES).map(|_| pick()).collect();
        let mut env = users.server_env();
        env.push(("NATS_ROUTE_PASSWORD".into(), route_password.clone()));
        for (i, route_port) in route_ports.iter().enumerate() {
            env.push((
                format!("NATS_ROUTE_{}", i + 1),
                format!("nats://route:{route_password}@127.0.0.1:{route_port}"),
            ));
        }
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let store = tempfile::tempdir().expect("tempdir");
            // <store>/nats.conf and <store>/cluster/nats-<n>.conf: the include `../nats.conf`
            // resolves as in the repository.
            let rewrites =
                shipped_nats_conf_rewrites(ports[i], http_ports[i], &store.path().join("data"));
            write_shipped_nats_files(store.path(), &rewrites, &users);
            add_auditor(&store.path().join("merchants.conf"), &auditor);
            let node_file = format!("deploy/nats/cluster/nats-{}.conf", i + 1);
            let node = rewrite_shipped(
                &node_file,
                &[
                    (
                        "listen: 0.0.0.0:6222",
                        format!("listen: 127.0.0.1:{}", route_ports[i]),
                    ),
                    // Plaintext on loopback, as the single server's tests load nats.conf
                    // rather than the compose entry point nats-tls.conf.
                    (
                        "include ../nats-tls.conf",
                        "include ../nats.conf".to_string(),
                    ),
                ],
            );
            std::fs::create_dir_all(store.path().join("cluster")).expect("cluster dir");
            let conf = store.path().join(format!("cluster/nats-{}.conf", i + 1));
            std::fs::write(&conf, node).expect("write node conf");
            let args = vec!["-c".to_string(), conf.display().to_string()];
            nodes.push(NatsServer::spawn(
                ports[i],
                store,
                &args,
                &env,
                Some(users.clone()),
            ));
        }
        let cluster = NatsCluster {
            nodes,
            http_ports,
            users,
            auditor,
        };
        for i in 0..NODES {
            cluster.wait_healthy(i, Duration::from_secs(30));
        }
        cluster.wait_meta_current(Duration::from_secs(30));
        cluster
    }

    /// Waits until the JetStream meta group has a leader and every other node is a current
    /// peer: `/healthz` can pass before, and an R3 stream created or scaled then fails with "no
    /// suitable peers for placement" (seen in tests/nats_cluster.rs).
    pub fn wait_meta_current(&self, within: Duration) {
        let until = Instant::now() + within;
        loop {
            let ready = (0..NODES).any(|i| {
                let Some(response) = self.monitor(i, "/jsz") else {
                    return false;
                };
                let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
                let jsz: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
                let meta = &jsz["meta_cluster"];
                let replicas = meta["replicas"].as_array().cloned().unwrap_or_default();
                meta["leader"].as_str().is_some_and(|l| !l.is_empty())
                    && replicas.len() == NODES - 1
                    && replicas
                        .iter()
                        .all(|r| r["current"] == true && r["offline"] != true)
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < until,
                "the JetStream meta group did not form within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every node's client URL, comma-separated (what `nats.url` takes for a cluster).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// kill -9 of node `i` (0-based).
    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].kill9();
    }

    /// Restarts node `i` on its ports and store and waits until it is healthy again.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
        self.wait_healthy(i, Duration::from_secs(30));
        self.wait_meta_current(Duration::from_secs(30));
    }

    /// Waits until node `i`'s `/healthz` answers 200 (JetStream current); panics after `within`.
    pub fn wait_healthy(&self, i: usize, within: Duration) {
        let until = Instant::now() + within;
        loop {
            if self
                .monitor(i, "/healthz")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"))
            {
                return;
            }
            assert!(
                Instant::now() < until,
                "nats node {} not healthy within {within:?}; its log:\n{}",
                i + 1,
                self.nodes[i].log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET `path` on node `i`'s monitoring port: the whole HTTP response, or `None`.
    pub fn monitor(&self, i: usize, path: &str) -> Option<String> {
        http_get(self.http_ports[i], path)
    }

    /// The index of the node named `server_name` (`nats-<n>`), as JetStream names a leader.
    pub fn index_of(server_name: &str) -> Option<usize> {
        let n: usize = server_name.strip_prefix("nats-")?.parse().ok()?;
        (1..=NODES).contains(&n).then(|| n - 1)
    }
}

/// Adds the test-only user `auditor` (every right) first in the users list of the generated
/// `merchants` file.
fn add_auditor(merchants: &std::path::Path, password: &str) {
    let text = std::fs::read_to_string(merchants).expect("read merchants.conf");
    let open = "\nusers: [\n";
    assert!(
        text.contains(open),
        "merchants.conf has no `users: [` line:\n{text}"
    );
    let text = text.replacen(
        open,
        &format!("{open}  {{ user: auditor, password: \"{password}\" }}\n"),
        1,
    );
    std::fs::write(merchants, text).expect("write merchants.conf");
}
