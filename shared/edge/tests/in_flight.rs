//! `BFF_MAX_IN_FLIGHT`: API requests over the bound wait for one to end,
//! in arrival order, and are then served; the probes are never held; below
//! the configured ceiling, the bound follows the load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

/// How long the slow route works on a request.
const WORK: Duration = Duration::from_millis(300);

/// Requests being worked on now, and the most seen at once.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    most: AtomicUsize,
}

fn slow_route(gauge: Arc<Gauge>) -> Router {
    Router::new().route(
        "/slow",
        get(move || {
            let gauge = gauge.clone();
            async move {
                let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
                gauge.most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(WORK).await;
                gauge.now.fetch_sub(1, Ordering::SeqCst);
                "done"
            }
        }),
    )
}

/// A BFF edge over the demo world serving [`slow_route`], configured by
/// `configure`: the demo stack (keep it for the test's length), the route's
/// gauge, the server, a token for it and a client.
async fn slow_edge(
    configure: impl FnOnce(&mut bff_edge::BffConfig),
) -> (
    demo_services::DemoStack,
    Arc<Gauge>,
    testkit::TestServer,
    String,
    reqwest::Client,
) {
    let stack = testkit::start_demo().await;
    let gauge = Arc::new(Gauge::default());
    let (server, token) =
        testkit::serve_edge_with(&stack, slow_route(gauge.clone()), configure).await;
    (stack, gauge, server, token, reqwest::Client::new())
}

/// `n` concurrent GETs of `/slow`, answered in any order.
async fn slow_requests(
    n: usize,
    client: &reqwest::Client,
    server: &testkit::TestServer,
    token: &str,
) -> Vec<reqwest::Result<reqwest::Response>> {
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..n {
        let request = client.get(server.url("/slow")).bearer_auth(token).send();
        requests.spawn(request);
    }
    let mut answers = Vec::new();
    while let Some(answer) = requests.join_next().await {
        answers.push(answer.expect("the request task"));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_bound_wait_their_turn_and_probes_are_not_held() {
    let (_stack, gauge, server, token, client) = slow_edge(|c| {
        c.max_in_flight = Some(2);
    })
    .await;

    let started = Instant::now();
    let all = slow_requests(5, &client, &server, &token);
    // While the API is busy (and requests wait), the probes answer at once.
    let probe = async {
        tokio::time::sleep(WORK / 3).await;
        let asked = Instant::now();
        let ready = client.get(server.url("/healthz")).send().await;
        (ready.map(|r| r.status().as_u16()), asked.elapsed())
    };
    let (answers, (probe_status, probe_took)) = tokio::join!(all, probe);
    let took = started.elapsed();

    for answer in answers {
        let answer = answer.expect("an answer");
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.expect("a body"), "done");
    }
    assert_eq!(gauge.most.load(Ordering::SeqCst), 2, "at most two at once");
    // Five requests two at a time: three turns of the slow route.
    assert!(
        took >= WORK * 3,
        "served in {took:?}, faster than three turns"
    );
    assert_eq!(probe_status.expect("a probe answer"), 200);
    assert!(probe_took < WORK, "the probe waited {probe_took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_means_no_bound() {
    let (_stack, gauge, server, token, client) = slow_edge(|c| {
        c.max_in_flight = None;
    })
    .await;
    for answer in slow_requests(5, &client, &server, &token).await {
        assert_eq!(answer.expect("an answer").status(), 200);
    }
    assert_eq!(gauge.most.load(Ordering::SeqCst), 5, "all five at once");
}

/// A bound lowered to its floor by a quiet spell grows, within a window,
/// for a burst of slow requests: they are not made to take turns while the
/// CPU has room for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_bound_grows_for_a_burst_of_slow_requests() {
    let (_stack, gauge, server, token, client) = slow_edge(|c| {
        c.max_in_flight = Some(100_000);
    })
    .await;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let floor = bff_edge::in_flight::FLOOR_PER_CPU * cpus;

    // A quiet window, then one request: the bound is sized down to its floor.
    tokio::time::sleep(bff_edge::in_flight::WINDOW * 2).await;
    let one = client
        .get(server.url("/slow"))
        .bearer_auth(&token)
        .send()
        .await;
    assert_eq!(one.expect("an answer").status(), 200);

    let burst = 2 * floor;
    let started = Instant::now();
    for answer in slow_requests(burst, &client, &server, &token).await {
        assert_eq!(answer.expect("an answer").status(), 200);
    }
    let took = started.elapsed();
    assert_eq!(
        gauge.most.load(Ordering::SeqCst),
        burst,
        "all {burst} at once: the bound grew past its floor of {floor}"
    );
    assert!(took < WORK * 3, "the burst took {took:?}");
}

/// A request that cannot start within the request deadline is refused with
/// a 503 problem+json and `Retry-After`, instead of being worked on after
/// its client gave up; those that got a place are served as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_start_within_the_request_deadline_is_refused() {
    let deadline = WORK / 3;
    let (_stack, gauge, server, token, client) = slow_edge(|c| {
        c.max_in_flight = Some(1);
        c.deadlines.request = deadline;
        c.deadlines.critical = deadline;
        c.deadlines.optional = deadline;
    })
    .await;

    let started = Instant::now();
    let mut served = 0;
    let mut refused = 0;
    for answer in slow_requests(3, &client, &server, &token).await {
        let answer = answer.expect("an answer");
        match answer.status().as_u16() {
            200 => served += 1,
            503 => {
                refused += 1;
                let header = |name: &str| {
                    answer
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                assert_eq!(header("retry-after").as_deref(), Some("1"));
                assert_eq!(
                    header("content-type").as_deref(),
                    Some("application/problem+json")
                );
                let body: serde_json::Value = answer.json().await.expect("a problem body");
                assert_eq!(body["status"], 503);
                let detail = body["detail"].as_str().unwrap_or_default();
                assert!(detail.contains("bound on requests in flight"), "{detail}");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((served, refused), (1, 2), "one place, two turned away");
    assert!(
        started.elapsed() < WORK * 2,
        "the refused did not wait for a turn: {:?}",
        started.elapsed()
    );
    assert_eq!(gauge.most.load(Ordering::SeqCst), 1);
}
