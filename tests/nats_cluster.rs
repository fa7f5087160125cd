//! The shipped 3-node NATS cluster (deploy/nats/cluster/nats-{1,2,3}.conf, each including
//! deploy/nats/nats.conf), run by the pinned nats-server as `NatsCluster::start_shipped` runs it
//! (only ports and stores rewritten): the nodes form a cluster over authenticated routes, the
//! users and permissions of the single-server file hold on every node, and oneclick pointed at
//! all three nodes (`nats.url` a comma-separated list) serves with R3 streams — scaling up the R1
//! streams a single-server deployment left behind.

use oneclick_testkit as support;

use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::{json, Value};
use support::nats::*;
use support::nats_cluster::NatsCluster;

/// `GET path` on node `i`'s monitoring port, as JSON.
fn monitor_json(cluster: &NatsCluster, i: usize, path: &str) -> Value {
    let response = cluster.monitor(i, path).unwrap_or_default();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_cluster_forms_over_authenticated_routes_and_keeps_the_shipped_permissions() {
    let cluster = NatsCluster::start_shipped();
    // Every node routes to both others, under the names the node files give them.
    for i in 0..3 {
        let routez = monitor_json(&cluster, i, "/routez");
        let mut peers: Vec<String> = routez["routes"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|r| r["remote_name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        peers.sort();
        peers.dedup();
        let others: Vec<String> = (1..=3)
            .filter(|n| *n != i + 1)
            .map(|n| format!("nats-{n}"))
            .collect();
        assert_eq!(peers, others, "node {} routes: {routez}", i + 1);
        // The included file's JetStream settings survive the include (a repeated `jetstream {}`
        // block would replace them whole).
        let varz = monitor_json(&cluster, i, "/varz");
        assert_eq!(
            varz["jetstream"]["config"]["sync_always"],
            true,
            "sync_interval: always on node {}: {}",
            i + 1,
            varz["jetstream"]["config"]
        );
        assert_eq!(varz["server_name"], format!("nats-{}", i + 1));
    }

    // A server that knows the route port but not the route password cannot join.
    let intruder_store = tempfile::tempdir().expect("tempdir");
    let node1_routes = monitor_json(&cluster, 0, "/varz")["cluster"]["addr"].clone();
    let node1_route_port = monitor_json(&cluster, 0, "/varz")["cluster"]["cluster_port"]
        .as_u64()
        .expect("node 1 has a route port");
    let intruder_port = free_port();
    let intruder = NatsServer::spawn(
        intruder_port,
        intruder_store,
        &[
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            intruder_port.to_string(),
            "--cluster_name".into(),
            "oneclick".into(),
            "--cluster".into(),
            format!("nats://127.0.0.1:{}", free_port()),
            "--routes".into(),
            format!("nats://route:not-the-password@127.0.0.1:{node1_route_port}"),
        ],
        &[],
        None,
    );
    let until = Instant::now() + Duration::from_secs(10);
    while !cluster.nodes[0].log_text().contains("authentication error") {
        assert!(
            Instant::now() < until,
            "node 1 never refused the intruder's route ({node1_routes}); its log:\n{}",
            cluster.nodes[0].log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let routes = monitor_json(&cluster, 0, "/routez");
    assert!(
        !routes
            .to_string()
            .contains(&format!("127.0.0.1:{intruder_port}")),
        "the intruder joined: {routes}"
    );
    drop(intruder);
    assert!(
        !cluster
            .nodes
            .iter()
            .any(|n| n.log_text().contains(&cluster.users.oneclick)),
        "a password in a node's log"
    );

    // The shipped users log in on any node; the gateway may not subscribe to another inbox.
    let url3 = cluster.nodes[2].url();
    let gateway = connect_as(
        &url3,
        "gateway",
        &cluster.users.gateway,
        Some("_INBOX.gateway"),
    )
    .await
    .expect("the gateway logs in on node 3");
    let mut foreign = gateway
        .subscribe("_INBOX.merchant_452739.x")
        .await
        .expect("subscribe is sent");
    gateway.flush().await.expect("flush");
    let nothing = tokio::time::timeout(
        Duration::from_secs(1),
        futures::StreamExt::next(&mut foreign),
    )
    .await;
    assert!(
        !matches!(nothing, Ok(Some(_))),
        "the gateway received on a merchant's inbox"
    );
    assert!(
        connect_as(&url3, "oneclick", "not-the-password", None)
            .await
            .is_err(),
        "a wrong password is refused on node 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneclick_on_every_node_serves_with_r3_streams_and_scales_an_old_r1_stream() {
    let cluster = NatsCluster::start_shipped();
    let auditor = connect_as(&cluster.nodes[0].url(), "auditor", &cluster.auditor, None)
        .await
        .expect("auditor");
    let js = jetstream::new(auditor.clone());
    // What a single-server deployment left behind: the command stream, R1.
    js.create_stream(jetstream::stream::Config {
        name: "ONECLICK_CMD".into(),
        subjects: vec!["oneclick.v1.cmd.>".into()],
        retention: jetstream::stream::RetentionPolicy::WorkQueue,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .expect("an R1 stream");

    let dir = tempfile::tempdir().expect("tempdir");
    // A dead server first in the list: the client must go on to the live ones.
    let urls = format!("nats://127.0.0.1:{},{}", free_port(), cluster.urls());
    let mut app = OneClick::prepare(dir.path(), &urls, None);
    app.set_env("ONECLICK__NATS__PREFIX", "oneclick");
    app.prefix = "oneclick".into();
    app.set_env("ONECLICK__NATS__USER", "oneclick");
    app.set_env("ONECLICK__NATS__PASSWORD", &cluster.users.oneclick);
    app.set_env("ONECLICK__NATS__STREAM_REPLICAS", "3");
    app.start(&auditor).await;

    for name in ["ONECLICK_CMD", "ONECLICK_EVT"] {
        let info = js
            .get_stream(name)
            .await
            .expect("stream")
            .info()
            .await
            .expect("info")
            .clone();
        assert_eq!(info.config.num_replicas, 3, "{name}: {:?}", info.config);
        let replicas = info.cluster.as_ref().map(|c| c.replicas.len()).unwrap_or(0);
        assert_eq!(
            replicas, 2,
            "{name}: a leader and two replicas: {:?}",
            info.cluster
        );
        assert!(info.config.deny_purge && info.config.deny_delete, "{name}");
    }
    assert!(
        app.log_text().contains("replicas as configured"),
        "the scale-up is logged: {}",
        app.log_text()
    );

    // A durable command through the cluster: published by the gateway, its event comes back.
    let gateway = connect_as(
        &cluster.nodes[1].url(),
        "gateway",
        &cluster.users.gateway,
        Some("_INBOX.gateway"),
    )
    .await
    .expect("gateway");
    let mut events = gateway
        .subscribe("oneclick.v1.evt.>")
        .await
        .expect("events");
    let command = json!({"command_id": "cl-1", "kind": "set_status", "merchant_id": DEMO_MERCHANT,
                         "customer_number": "cl-alice", "status": "deny"});
    let envelope: oneclick::wire::CommandEnvelope =
        serde_json::from_value(command.clone()).expect("a valid command");
    let subject = envelope.subject(
        &oneclick::subjects::Subjects::new("oneclick"),
        oneclick::subjects::DEFAULT_PARTITIONS,
    );
    let gw_js = jetstream::new(gateway.clone());
    gw_js
        .publish(subject, serde_json::to_vec(&command).expect("json").into())
        .await
        .expect("published")
        .await
        .expect("stored on R3");
    let event = tokio::time::timeout(
        Duration::from_secs(20),
        futures::StreamExt::next(&mut events),
    )
    .await
    .expect("an event within 20 s")
    .expect("event");
    let event: Value = serde_json::from_slice(&event.payload).expect("json");
    assert_eq!(event["command_id"], "cl-1", "{event}");
    assert_eq!(event["ok"], true, "{event}");
}
