//! The hub on a real runtime: one upstream subscription per key however
//! many watchers, closed when the last leaves; a watcher that does not read
//! neither delays the others nor holds more than the ring; resuming within
//! the window delivers exactly what was missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bff_live::{Delivery, EventId, Hub, HubConfig, Missed, Publisher};

type Publishers = Arc<Mutex<HashMap<&'static str, Publisher<&'static str, u32>>>>;

/// A hub whose upstream for a key hands its publisher to the test and
/// counts how many upstreams are running.
fn hub(config: HubConfig) -> (Hub<&'static str, u32>, Publishers, Arc<AtomicUsize>) {
    let publishers: Publishers = Arc::default();
    let running = Arc::new(AtomicUsize::new(0));
    let (p, r) = (publishers.clone(), running.clone());
    let hub = Hub::new(config, move |key, publisher| {
        let (p, r) = (p.clone(), r.clone());
        async move {
            struct Running(Arc<AtomicUsize>);
            impl Drop for Running {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            r.fetch_add(1, Ordering::SeqCst);
            let _running = Running(r);
            p.lock().expect("lock").insert(key, publisher);
            std::future::pending::<()>().await;
        }
    });
    (hub, publishers, running)
}

async fn publish(publishers: &Publishers, key: &'static str, value: u32) -> EventId {
    for _ in 0..200 {
        if let Some(id) = publishers
            .lock()
            .expect("lock")
            .get(key)
            .and_then(|p| p.publish(value))
        {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no upstream for {key}");
}

async fn event(sub: &mut bff_live::Subscription<&'static str, u32>) -> (EventId, u32) {
    match tokio::time::timeout(Duration::from_secs(1), sub.next()).await {
        Ok(Some(Delivery::Event(e))) => (e.id, e.payload),
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_share_one_upstream_which_closes_after_the_last() {
    let (hub, publishers, running) = hub(HubConfig::default());
    let mut watchers: Vec<_> = (0..1000).map(|_| hub.subscribe("p1", None)).collect();
    let mut other = hub.subscribe("p2", None);
    assert_eq!(hub.opened(), 2, "one upstream per key");
    publish(&publishers, "p1", 7).await;
    for w in &mut watchers {
        assert_eq!(event(w).await.1, 7);
    }
    publish(&publishers, "p2", 9).await;
    assert_eq!(event(&mut other).await.1, 9);
    assert_eq!(watchers[0].watchers(), 1000);

    drop(watchers);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(running.load(Ordering::SeqCst), 1, "p1's upstream stopped");
    assert_eq!(hub.keys(), ["p2"]);
    let publisher_gone = publishers
        .lock()
        .expect("lock")
        .get("p1")
        .map(|p| (p.is_watched(), p.publish(1)));
    assert_eq!(publisher_gone, Some((false, None)));

    let mut again = hub.subscribe("p1", None);
    assert_eq!(hub.opened(), 3, "a new watcher opens it again");
    publish(&publishers, "p1", 8).await;
    assert_eq!(event(&mut again).await.1, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_does_not_read_is_told_to_resync_and_delays_nobody() {
    let (hub, publishers, _) = hub(HubConfig {
        buffer: 32,
        replay: 16,
        linger: Duration::ZERO,
    });
    let mut slow = hub.subscribe("p", None);
    let mut fast = hub.subscribe("p", None);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..150 {
            seen.push(event(&mut fast).await.1);
        }
        seen
    });
    // Paced so the fast watcher keeps up; the slow one never reads.
    for v in 0..150 {
        publish(&publishers, "p", v).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seen = tokio::time::timeout(Duration::from_secs(2), reader)
        .await
        .expect("the fast watcher is not held up")
        .expect("task");
    assert_eq!(seen, (0..150).collect::<Vec<_>>(), "in order, none lost");
    // The slow one held at most the ring: it is told it missed events, then
    // gets the newest ones.
    assert!(matches!(slow.next().await, Some(Delivery::Resync(Missed::Lagged(n))) if n > 0));
    let (_, first_after) = event(&mut slow).await;
    assert!(first_after >= 150 - 32, "{first_after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_within_the_window_delivers_what_was_missed_once() {
    let (hub, publishers, _) = hub(HubConfig {
        buffer: 64,
        replay: 4,
        linger: Duration::ZERO,
    });
    let _keeper = hub.subscribe("p", None);
    let mut client = hub.subscribe("p", None);
    let mut last = None;
    for v in 1..=3 {
        publish(&publishers, "p", v).await;
        last = Some(event(&mut client).await.0);
    }
    let last = last.expect("ids");
    assert_eq!(client.position(), Some(last));
    drop(client);
    for v in 4..=6 {
        publish(&publishers, "p", v).await;
    }
    // The id travels as text (SSE Last-Event-ID, a WebSocket resume token).
    let token: EventId = last.to_string().parse().expect("round trip");
    let mut resumed = hub.subscribe("p", Some(token));
    let missed: Vec<u32> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(event(&mut resumed).await.1);
        }
        v
    };
    assert_eq!(missed, [4, 5, 6]);
    publish(&publishers, "p", 7).await;
    assert_eq!(event(&mut resumed).await.1, 7, "then live, no duplicate");

    // Out of the window (4 kept, 6 published since): resync.
    for v in 8..=13 {
        publish(&publishers, "p", v).await;
    }
    let mut late = hub.subscribe("p", Some(token));
    assert!(matches!(
        late.next().await,
        Some(Delivery::Resync(Missed::OutOfWindow))
    ));
    // An id of another process (another epoch) is not trusted either.
    let foreign: EventId = if token.to_string().starts_with("00000000") {
        "00000001-5".parse().expect("id")
    } else {
        "00000000-5".parse().expect("id")
    };
    let mut stranger = hub.subscribe("p", Some(foreign));
    assert!(matches!(
        stranger.next().await,
        Some(Delivery::Resync(Missed::OutOfWindow))
    ));
    for bad in ["", "5", "zz-1", "0000000-1", "00000000-x"] {
        assert!(bad.parse::<EventId>().is_err(), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_lingers_after_its_last_watcher_so_a_reconnect_resumes() {
    let (hub, publishers, running) = hub(HubConfig {
        linger: Duration::from_millis(300),
        ..HubConfig::default()
    });
    let mut first = hub.subscribe("p", None);
    let id = publish(&publishers, "p", 1).await;
    assert_eq!(event(&mut first).await, (id, 1));
    drop(first);
    // Published while nobody watches: kept for the one who comes back.
    publish(&publishers, "p", 2).await;
    let mut back = hub.subscribe("p", Some(id));
    assert_eq!(event(&mut back).await.1, 2, "resumed, nothing missed");
    assert_eq!(hub.opened(), 1, "the upstream was kept");
    drop(back);
    // Then it closes.
    let start = std::time::Instant::now();
    while running.load(Ordering::SeqCst) > 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    assert!(hub.keys().is_empty());
}
