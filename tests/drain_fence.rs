//! Why endpoints stop with a counted unsubscribe (src/surfaces.rs, docs/reliability.md finding
//! 7), shown on a real nats-server with the client library alone: two members of one queue
//! group share a stream of numbered messages published as fast as possible; one member leaves
//! in the middle. Every message is delivered to one member or the other unless the leaving
//! member's client drops what the server had routed to it before it read the UNSUB.
//!
//! - `oneclick::surfaces::unsubscribe_counted` (what every endpoint does): the member takes what
//!   waits in its client's buffer, then `UNSUB <sid> <received + buffered + tail>`; the server
//!   stops routing to it at exactly that count and the client keeps the subscription until it
//!   has received exactly that many: **nothing is lost** — asserted. The publisher is paced
//!   (10,000 messages/s, a busy endpoint) so that fewer than the tail are on the wire.
//! - `Subscriber::drain` (async-nats 0.51 forgets the subscription at the connection's next
//!   poll, not at the server's PONG): what it loses is printed, not asserted (a race).

use oneclick_testkit as support;

use std::time::Duration;

use futures::StreamExt;
use support::nats::NatsServer;

const MESSAGES: u64 = 20_000;
/// The leaving member stops after receiving this many.
const LEAVE_AFTER: u64 = 5_000;
const TAIL: u64 = 500;

#[derive(Clone, Copy, Debug)]
enum Leave {
    CountedUnsubscribe,
    Drain,
}

/// Publishes [`MESSAGES`] to a queue group of two; one member leaves with `how` after
/// [`LEAVE_AFTER`]. Returns (received by the leaving member, by the staying one).
async fn share_and_leave(how: Leave) -> (u64, u64) {
    let server = NatsServer::start();
    let subject = "fence.test";
    let a = async_nats::connect(server.url()).await.expect("a");
    let b = async_nats::connect(server.url()).await.expect("b");
    let publisher = async_nats::connect(server.url()).await.expect("publisher");
    let mut leaving = a
        .queue_subscribe(subject, "q".into())
        .await
        .expect("subscribe a");
    let mut staying = b
        .queue_subscribe(subject, "q".into())
        .await
        .expect("subscribe b");
    a.flush().await.expect("flush a");
    b.flush().await.expect("flush b");

    let leaver = tokio::spawn(async move {
        let mut received = 0u64;
        let mut left = false;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(1), leaving.next()).await;
            match next {
                Ok(Some(_)) => received += 1,
                Ok(None) => break,
                Err(_) => break, // nothing more is coming
            }
            if !left && received == LEAVE_AFTER {
                left = true;
                match how {
                    Leave::CountedUnsubscribe => {
                        let (buffered, max) =
                            oneclick::surfaces::unsubscribe_counted(&mut leaving, received, TAIL)
                                .await
                                .expect("unsubscribe_counted");
                        assert_eq!(max, received + buffered.len() as u64 + TAIL);
                        received += buffered.len() as u64;
                    }
                    Leave::Drain => leaving.drain().await.expect("drain"),
                }
            }
        }
        received
    });
    let stayer = tokio::spawn(async move {
        let mut received = 0u64;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(1), staying.next()).await {
            received += 1;
        }
        received
    });
    // 10,000 messages per second, in bursts of 100 every 10 ms.
    let began = tokio::time::Instant::now();
    for n in 0..MESSAGES {
        if n % 100 == 0 {
            tokio::time::sleep_until(began + Duration::from_millis(n / 10)).await;
            publisher.flush().await.expect("flush");
        }
        publisher
            .publish(subject, n.to_string().into())
            .await
            .expect("publish");
    }
    publisher.flush().await.expect("flush");
    let a = leaver.await.expect("leaver");
    let b = stayer.await.expect("stayer");
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counted_unsubscribe_hands_a_queue_members_share_over_without_losing_a_message() {
    let (a, b) = share_and_leave(Leave::CountedUnsubscribe).await;
    assert!(a >= LEAVE_AFTER, "the leaving member received {a}");
    assert_eq!(
        a + b,
        MESSAGES,
        "lost {} (leaving member {a}, staying member {b})",
        MESSAGES as i64 - (a + b) as i64
    );
    assert!(a >= LEAVE_AFTER + TAIL, "it served its tail: {a}");

    // The same with a drain: shown for comparison (a race, so not asserted).
    let (a, b) = share_and_leave(Leave::Drain).await;
    eprintln!(
        "drain: the leaving member received {a}, the staying one {b}, lost {} of {MESSAGES}",
        MESSAGES as i64 - (a + b) as i64
    );
}
