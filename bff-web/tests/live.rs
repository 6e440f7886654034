//! Live updates over real sockets, both transports: changes made through
//! the control API reach watching clients; scope, token and input are
//! checked before any upgrade; a reconnecting client resumes; a stream cut
//! by a fault is reconnected and reported; one `WatchStock` call serves a
//! thousand watchers; a client that does not read is bounded and delays
//! nobody; streams end with a reason when the token expires and on
//! shutdown.

use std::time::{Duration, Instant};

use demo_services::{DemoConfig, DemoStack, ServiceName};
use serde_json::{Value, json};
use testkit::TestServer;
use testkit::live::{LiveClient, Transport};
use uuid::Uuid;

const BOTH: [Transport; 2] = [Transport::Sse, Transport::WebSocket];
const SECOND: Duration = Duration::from_secs(1);

async fn setup(extra: &[(&str, &str)]) -> (DemoStack, TestServer, String) {
    setup_with(DemoConfig::ephemeral(), extra).await
}

async fn setup_with(demo: DemoConfig, extra: &[(&str, &str)]) -> (DemoStack, TestServer, String) {
    let stack = testkit::start_demo_with(demo).await;
    let config = testkit::bff_config_with(&stack, bff_web::SPEC, extra);
    let server = testkit::start_bff(config, bff_web::app).await;
    let token = testkit::user_token(&stack, "user0001", "bff-web", None);
    (stack, server, token)
}

fn product(stack: &DemoStack, n: usize) -> Uuid {
    stack.data().products()[n].id
}

fn live_url(server: &TestServer, id: impl std::fmt::Display) -> String {
    server.url(&format!("/v1/products/{id}/live"))
}

async fn open(
    transport: Transport,
    server: &TestServer,
    id: Uuid,
    token: &str,
    last: Option<&str>,
) -> LiveClient {
    match LiveClient::open(transport, &live_url(server, id), token, last).await {
        Ok(client) => client,
        Err(refused) => panic!("{transport:?} refused: {} {}", refused.status, refused.body),
    }
}

async fn put(stack: &DemoStack, path: String, body: Value) {
    let response = reqwest::Client::new()
        .put(format!("{}{path}", stack.control_url()))
        .json(&body)
        .send()
        .await
        .expect("control API");
    assert_eq!(response.status(), 200, "PUT {path}");
}

async fn set_price(stack: &DemoStack, id: Uuid, current: u64) {
    put(
        stack,
        format!("/prices/{id}"),
        json!({ "current": current }),
    )
    .await;
}

async fn set_stock(stack: &DemoStack, id: Uuid, available: i64) {
    put(
        stack,
        format!("/stock/{id}"),
        json!({ "available": available }),
    )
    .await;
}

async fn watch_stock_calls(stack: &DemoStack) -> u64 {
    let stats: Value = reqwest::get(format!("{}/stats", stack.control_url()))
        .await
        .expect("GET /stats")
        .json()
        .await
        .expect("JSON");
    stats["inventory"]["/inventory.v1.InventoryService/WatchStock"]
        .as_u64()
        .unwrap_or(0)
}

async fn metrics(server: &TestServer) -> String {
    server.get_text("/metrics").await
}

/// The value of the first series of `name` whose labels contain `labels`.
fn series(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn price_and_stock_changes_reach_clients_of_both_transports_within_a_second() {
    let (stack, server, token) = setup(&[]).await;
    let id = product(&stack, 0);
    for (n, transport) in BOTH.into_iter().enumerate() {
        let mut client = open(transport, &server, id, &token, None).await;
        let snapshot = client
            .next(Duration::from_secs(5))
            .await
            .expect("a snapshot");
        assert_eq!(
            snapshot.kind, "snapshot",
            "{transport:?}: {:?}",
            snapshot.data
        );
        let data = &snapshot.data;
        assert_eq!(data["productId"], id.to_string());
        assert!(data["pricing"]["current"].is_u64(), "{data}");
        assert!(data["inventory"]["available"].is_i64(), "{data}");
        assert!(data["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(data["degraded"], json!([]));

        let price = 4200 + n as u64;
        let changed = Instant::now();
        set_price(&stack, id, price).await;
        let event = client
            .wait_for("price", SECOND, |d| d["current"] == price)
            .await
            .unwrap_or_else(|| panic!("{transport:?}: no price event within 1 s"));
        assert!(changed.elapsed() < SECOND);
        assert_eq!(event.data["productId"], id.to_string());
        assert!(event.id.is_some(), "a price event has an id");
        assert!(event.data["currency"].is_string());

        let available = 77 + n as i64;
        let changed = Instant::now();
        set_stock(&stack, id, available).await;
        let event = client
            .wait_for("stock", SECOND, |d| d["available"] == available)
            .await
            .unwrap_or_else(|| panic!("{transport:?}: no stock event within 1 s"));
        assert!(changed.elapsed() < SECOND);
        assert_eq!(event.data["inStock"], true);
        assert!(event.data["warehouses"].is_array());
        assert!(event.id.is_some());
    }
    // The product page agrees with what was streamed (the stock fragment
    // was dropped on the change).
    let page: Value = reqwest::Client::new()
        .get(server.url(&format!("/v1/products/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("page")
        .json()
        .await
        .expect("JSON");
    assert_eq!(page["pricing"]["current"], 4201);
    assert_eq!(page["inventory"]["available"], 78);
    let text = metrics(&server).await;
    assert!(
        series(&text, "bff_live_events_total", "type=\"price\"") >= 2.0,
        "{text}"
    );
    assert!(series(&text, "bff_live_events_total", "type=\"snapshot\"") >= 2.0);
}

#[tokio::test]
async fn heartbeats_arrive_on_the_configured_interval() {
    let (stack, server, token) = setup(&[("BFF_LIVE_HEARTBEAT", "200ms")]).await;
    let id = product(&stack, 1);
    for transport in BOTH {
        let mut client = open(transport, &server, id, &token, None).await;
        let beat = client
            .wait_for("heartbeat", SECOND, |_| true)
            .await
            .unwrap_or_else(|| panic!("{transport:?}: no heartbeat"));
        assert!(beat.id.is_none(), "a heartbeat has no id to resume from");
        assert!(beat.data["timestamp"].is_string());
    }
}

#[tokio::test]
async fn scope_token_and_input_are_checked_before_any_upgrade() {
    let (stack, server, token) = setup(&[]).await;
    let id = product(&stack, 0);
    let no_live = testkit::user_token(&stack, "user0001", "bff-web", Some("profile orders"));
    let url = live_url(&server, id);
    for transport in BOTH {
        let cases: [(&str, String, Option<&str>, u16); 5] = [
            ("no token", url.clone(), None, 401),
            ("no live scope", url.clone(), None, 403),
            ("bad id", live_url(&server, "not-a-uuid"), None, 400),
            (
                "unknown product",
                live_url(&server, Uuid::from_u128(7)),
                None,
                404,
            ),
            ("bad resume token", url.clone(), Some("yesterday"), 400),
        ];
        for (what, url, last, status) in cases {
            let token = match what {
                "no token" => "",
                "no live scope" => no_live.as_str(),
                _ => token.as_str(),
            };
            let refused = match LiveClient::open(transport, &url, token, last).await {
                Ok(_) => panic!("{transport:?} {what}: opened"),
                Err(refused) => refused,
            };
            assert_eq!(
                refused.status, status,
                "{transport:?} {what}: {}",
                refused.body
            );
            assert_eq!(
                refused.content_type, "application/problem+json",
                "{transport:?} {what}"
            );
            assert_eq!(refused.body["status"], status, "{transport:?} {what}");
        }
    }
    // Nothing was opened upstream for any of them.
    assert_eq!(watch_stock_calls(&stack).await, 0);
}

#[tokio::test]
async fn limits_per_subject_and_per_replica_refuse_before_upgrading() {
    let (stack, server, token) = setup(&[
        ("BFF_LIVE_MAX_PER_SUBJECT", "2"),
        ("BFF_LIVE_MAX_STREAMS", "3"),
    ])
    .await;
    let id = product(&stack, 0);
    let _a = open(Transport::Sse, &server, id, &token, None).await;
    let _b = open(Transport::WebSocket, &server, id, &token, None).await;
    for transport in BOTH {
        let refused = LiveClient::open(transport, &live_url(&server, id), &token, None)
            .await
            .expect_err("a third stream of the same user");
        assert_eq!(refused.status, 429, "{}", refused.body);
    }
    let other = testkit::user_token(&stack, "user0002", "bff-web", None);
    let _c = open(Transport::Sse, &server, id, &other, None).await;
    let refused = LiveClient::open(Transport::WebSocket, &live_url(&server, id), &other, None)
        .await
        .expect_err("over the replica's limit");
    assert_eq!(refused.status, 503, "{}", refused.body);
    drop(_a);
    // The place is given back when the client goes.
    let start = Instant::now();
    loop {
        match LiveClient::open(Transport::Sse, &live_url(&server, id), &other, None).await {
            Ok(_) => break,
            Err(r) => assert!(
                start.elapsed() < Duration::from_secs(5),
                "still refused: {}",
                r.status
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = metrics(&server).await;
    assert!(
        series(&text, "bff_live_refused_total", "subject_limit") >= 2.0,
        "{text}"
    );
    assert!(series(&text, "bff_live_refused_total", "replica_limit") >= 1.0);
}

#[tokio::test]
async fn a_reconnecting_client_resumes_with_what_it_missed() {
    let (stack, server, token) = setup(&[]).await;
    let id = product(&stack, 2);
    for (n, transport) in BOTH.into_iter().enumerate() {
        // Someone else keeps watching meanwhile.
        let mut observer = open(Transport::Sse, &server, id, &token, None).await;
        let mut client = open(transport, &server, id, &token, None).await;
        let base = 1000 * (n as u64 + 1);
        set_price(&stack, id, base).await;
        let seen = client
            .wait_for("price", SECOND, |d| d["current"] == base)
            .await
            .expect("the first change");
        let last = seen.id.expect("an id");
        drop(client);
        for v in 1..=3 {
            set_price(&stack, id, base + v).await;
        }
        observer
            .wait_for("price", SECOND, |d| d["current"] == base + 3)
            .await
            .expect("the observer saw the last change");

        let mut back = open(transport, &server, id, &token, Some(&last)).await;
        let mut missed = Vec::new();
        for _ in 0..3 {
            let event = back.next(SECOND).await.expect("a missed event");
            assert_eq!(
                event.kind, "price",
                "no snapshot when resuming: {:?}",
                event.data
            );
            missed.push(event.data["current"].as_u64().expect("current"));
        }
        assert_eq!(missed, [base + 1, base + 2, base + 3], "{transport:?}");

        // An id from outside the window (or another replica) gets a snapshot.
        let mut stranger = open(transport, &server, id, &token, Some("00000001-1")).await;
        let first = stranger.next(SECOND * 5).await.expect("an event");
        assert_eq!(first.kind, "snapshot");
        assert_eq!(first.data["pricing"]["current"], base + 3);
    }
    // One upstream stream for the product throughout.
    assert_eq!(watch_stock_calls(&stack).await, 1);
}

#[tokio::test]
async fn a_lone_client_that_reconnects_resumes_on_the_same_upstream_stream() {
    let (stack, server, token) = setup(&[("BFF_LIVE_LINGER", "30s")]).await;
    let id = product(&stack, 3);
    let mut client = open(Transport::Sse, &server, id, &token, None).await;
    set_stock(&stack, id, 11).await;
    let last = client
        .wait_for("stock", SECOND, |d| d["available"] == 11)
        .await
        .and_then(|e| e.id)
        .expect("a stock event");
    drop(client);
    set_stock(&stack, id, 12).await;
    let mut back = open(Transport::Sse, &server, id, &token, Some(&last)).await;
    let event = back.next(SECOND * 2).await.expect("the missed change");
    assert_eq!(
        (event.kind.as_str(), &event.data["available"]),
        ("stock", &json!(12))
    );
    assert_eq!(watch_stock_calls(&stack).await, 1, "the stream was kept");
}

#[tokio::test]
async fn a_stream_cut_by_a_fault_reconnects_and_clients_see_degraded_then_recovery() {
    let (stack, server, token) = setup(&[]).await;
    let id = product(&stack, 4);
    let mut sse = open(Transport::Sse, &server, id, &token, None).await;
    let mut ws = open(Transport::WebSocket, &server, id, &token, None).await;
    for client in [&mut sse, &mut ws] {
        assert_eq!(
            client.next(SECOND * 5).await.expect("snapshot").kind,
            "snapshot"
        );
    }
    for (service, source) in [
        (ServiceName::Inventory, "stock"),
        (ServiceName::Pricing, "price"),
    ] {
        testkit::set_fault(&stack, service.as_str(), json!({ "error_rate": 1.0 })).await;
        for client in [&mut sse, &mut ws] {
            let degraded = client
                .wait_for("degraded", SECOND * 3, |d| {
                    d["sources"]
                        .as_array()
                        .is_some_and(|s| s.contains(&json!(source)))
                })
                .await
                .unwrap_or_else(|| panic!("no degraded event for {source}"));
            assert!(degraded.data["reason"].is_string());
        }
        testkit::clear_fault(&stack, service.as_str()).await;
        for client in [&mut sse, &mut ws] {
            client
                .wait_for("recovered", SECOND * 10, |d| d["source"] == source)
                .await
                .unwrap_or_else(|| panic!("no recovery of {source}"));
            // The current value follows the recovery.
            client
                .wait_for(source, SECOND * 3, |d| d["productId"] == id.to_string())
                .await
                .unwrap_or_else(|| panic!("no current {source} after recovery"));
        }
    }
    // Changes flow again.
    set_stock(&stack, id, 5).await;
    set_price(&stack, id, 999).await;
    for client in [&mut sse, &mut ws] {
        client
            .wait_for("stock", SECOND, |d| d["available"] == 5)
            .await
            .expect("stock after recovery");
        client
            .wait_for("price", SECOND, |d| d["current"] == 999)
            .await
            .expect("price after recovery");
    }
    let text = metrics(&server).await;
    assert!(
        series(
            &text,
            "bff_live_upstream_reconnects_total",
            "source=\"stock\""
        ) >= 1.0,
        "{text}"
    );
    assert!(
        series(
            &text,
            "bff_live_upstream_reconnects_total",
            "source=\"prices\""
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_of_one_product_cost_one_watch_stock_call() {
    let (stack, server, token) = setup(&[
        ("BFF_LIVE_MAX_PER_SUBJECT", "2000"),
        ("BFF_RATE_LIMITS", "off"),
    ])
    .await;
    let id = product(&stack, 5);
    let url = live_url(&server, id);
    // The first watcher opens the product, and its stock stream delivers a
    // change; then 999 more arrive at once. (Waiting for the stream first
    // keeps a slow open on a loaded machine, past the BFF's 3 s open
    // timeout and so retried, from counting as a second watch: this test is
    // about the watchers sharing one stream, not about how long opening may
    // take.) The stream's opening value may be published before this
    // watcher listens (its snapshot has it then): so a change, with a new
    // value each time, until one arrives as a `stock` event.
    let mut first = open(Transport::Sse, &server, id, &token, None).await;
    assert_eq!(
        first.next(SECOND * 5).await.expect("snapshot").kind,
        "snapshot"
    );
    let mut delivered = false;
    for available in 1000..1010 {
        set_stock(&stack, id, available).await;
        if first
            .wait_for("stock", SECOND * 2, |d| d["available"] == available)
            .await
            .is_some()
        {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "the stock stream delivers");
    let mut opening = Vec::new();
    for n in 1..1000 {
        let (url, token) = (url.clone(), token.clone());
        let transport = if n % 2 == 0 {
            Transport::Sse
        } else {
            Transport::WebSocket
        };
        opening.push(tokio::spawn(async move {
            let mut client = LiveClient::open(transport, &url, &token, None)
                .await
                .map_err(|r| (r.status, r.body.to_string()))?;
            let first = client.next(Duration::from_secs(20)).await;
            if first.is_none_or(|e| e.kind != "snapshot") {
                return Err((0, String::new()));
            }
            Ok(client)
        }));
    }
    let mut clients = vec![first];
    for task in opening {
        clients.push(task.await.expect("task").expect("opened, with a snapshot"));
    }
    assert_eq!(
        watch_stock_calls(&stack).await,
        1,
        "one upstream stream for 1,000 watchers"
    );
    set_stock(&stack, id, 4321).await;
    let mut waiting = Vec::new();
    for mut client in clients {
        waiting.push(tokio::spawn(async move {
            client
                .wait_for("stock", Duration::from_secs(10), |d| d["available"] == 4321)
                .await
                .is_some()
        }));
    }
    for task in waiting {
        assert!(task.await.expect("task"), "every client got the change");
    }
    assert_eq!(watch_stock_calls(&stack).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_bounded_and_delays_nobody() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // The kernel's share bounded too (else each connection may buffer up
    // to tcp_wmem's maximum, 4 MiB, before the server notices).
    let (stack, server, token) =
        setup(&[("BFF_LIVE_BUFFER", "8"), ("BFF_SEND_BUFFER", "16384")]).await;
    let id = product(&stack, 6);
    // A client with a tiny receive window that stops reading after the
    // response head.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut slow = socket.connect(server.addr()).await.expect("connect");
    slow.write_all(
        format!(
            "GET /v1/products/{id}/live HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\nauthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("request");
    let mut head = [0u8; 512];
    let n = slow.read(&mut head).await.expect("response head");
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );

    let mut fast = open(Transport::WebSocket, &server, id, &token, None).await;
    assert_eq!(
        fast.next(SECOND * 5).await.expect("snapshot").kind,
        "snapshot"
    );

    // 3,000 changes: far more than the ring (8) and what the sockets and
    // the server's write queue hold for a client that does not read.
    let control = reqwest::Client::new();
    let mut last = 0;
    let mut previous_seen = 0;
    for round in 0..30u64 {
        for i in 0..100u64 {
            last = 10_000 + round * 100 + i;
            let r = control
                .put(format!("{}/prices/{id}", stack.control_url()))
                .json(&json!({ "current": last }))
                .send()
                .await
                .expect("control API");
            assert_eq!(r.status(), 200);
        }
        // The reading client keeps up: it has the round's last price within a second.
        let event = fast
            .wait_for("price", SECOND, |d| d["current"] == last)
            .await
            .unwrap_or_else(|| panic!("the reading client was held up in round {round}"));
        let seen = event.data["current"].as_u64().expect("current");
        assert!(seen > previous_seen);
        previous_seen = seen;
    }
    // When it reads again it gets the latest state, not the whole backlog.
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), slow.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&received);
    let snapshots = text.matches("event: snapshot").count();
    let prices = text.matches("event: price").count();
    assert!(snapshots >= 1, "a resync snapshot after falling behind");
    assert!(
        (prices as u64) < last - 10_000,
        "{prices} price events of {} were kept for it",
        last - 10_000
    );
    assert!(
        text.contains(&format!("\"current\":{last}")),
        "it ends with the latest price"
    );
    assert!(
        series(&metrics(&server).await, "bff_live_drops_total", "lagged") > 0.0,
        "counted as dropped for it"
    );
}

#[tokio::test]
async fn the_stream_ends_when_the_token_expires() {
    let demo = DemoConfig {
        access_token_ttl: Duration::from_secs(2),
        ..DemoConfig::ephemeral()
    };
    let (stack, server, _) = setup_with(demo, &[]).await;
    let id = product(&stack, 7);
    for transport in BOTH {
        let token = testkit::user_token(&stack, "user0001", "bff-web", None);
        let mut client = open(transport, &server, id, &token, None).await;
        let end = client
            .wait_for("end", Duration::from_secs(4), |_| true)
            .await
            .unwrap_or_else(|| panic!("{transport:?}: the stream outlived its token"));
        assert_eq!(end.data["reason"], "tokenExpired");
        assert!(client.next(SECOND).await.is_none(), "nothing after the end");
        if transport == Transport::WebSocket {
            assert_eq!(client.closed_with.as_ref().map(|c| c.0), Some(4401));
        }
    }
}

#[tokio::test]
async fn shutdown_ends_streams_with_a_reason_within_the_drain_bound() {
    let stack = testkit::start_demo().await;
    let process = testkit::BffProcess::start(
        env!("CARGO_BIN_EXE_bff-web"),
        &stack,
        &testkit::upstreams_of(bff_web::SPEC),
        &[("BFF_SHUTDOWN_GRACE", "5s")],
    )
    .await;
    let token = testkit::user_token(&stack, "user0001", "bff-web", None);
    let id = product(&stack, 8);
    let url = process.url(&format!("/v1/products/{id}/live"));
    let mut sse = LiveClient::open(Transport::Sse, &url, &token, None)
        .await
        .expect("SSE");
    let mut ws = LiveClient::open(Transport::WebSocket, &url, &token, None)
        .await
        .expect("WebSocket");
    for client in [&mut sse, &mut ws] {
        assert_eq!(
            client.next(SECOND * 5).await.expect("snapshot").kind,
            "snapshot"
        );
    }
    let started = Instant::now();
    process.terminate();
    for client in [&mut sse, &mut ws] {
        let end = client
            .wait_for("end", Duration::from_secs(3), |_| true)
            .await
            .expect("an end event");
        assert_eq!(end.data["reason"], "shutdown");
    }
    assert!(ws.next(SECOND).await.is_none());
    assert_eq!(ws.closed_with.as_ref().map(|c| c.0), Some(1001));
    let (code, _) = process.stop().await;
    assert_eq!(code, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn with_redis_price_changes_arrive_on_its_channel() {
    let Some(redis) = testkit::RedisServer::start().await else {
        return;
    };
    let demo = DemoConfig {
        redis_url: Some(redis.url()),
        ..DemoConfig::ephemeral()
    };
    let (stack, server, token) = setup_with(demo, &[("REDIS_URL", &redis.url())]).await;
    let id = product(&stack, 9);
    let mut client = open(Transport::Sse, &server, id, &token, None).await;
    assert_eq!(
        client.next(SECOND * 5).await.expect("snapshot").kind,
        "snapshot"
    );
    // With Redis the pricing service's own event stream is not followed:
    // faulting the service (which cuts that stream) changes nothing, the
    // change arrives over the Redis channel.
    testkit::set_fault(&stack, "pricing", json!({ "error_rate": 1.0 })).await;
    let changed = Instant::now();
    set_price(&stack, id, 31_337).await;
    client
        .wait_for("price", SECOND, |d| d["current"] == 31_337)
        .await
        .expect("a price event over Redis within 1 s");
    assert!(changed.elapsed() < SECOND);
}
