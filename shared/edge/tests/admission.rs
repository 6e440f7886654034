//! Admission on real sockets: API requests past the limit wait at most
//! the admission queue and are then refused with 503 problem+json; the
//! probes are never held; a class keeps its share of the limit. (How the
//! adaptive limit moves is tested on paused time in bff-limit.)

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

/// Checks `answer` is the admission's refusal: 503 problem+json with
/// `Retry-After: 1` and a detail naming the limit.
async fn assert_refused(answer: reqwest::Response) {
    assert_eq!(answer.status(), 503);
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
    assert!(detail.contains("limit on requests in flight"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_limit_are_refused_within_the_queue_and_probes_are_not_held() {
    let (_stack, gauge, server, token, client) = slow_edge(|c| {
        c.max_in_flight = Some(2);
        c.adaptive_limit = false;
        c.admission_queue = Duration::from_millis(20);
    })
    .await;

    // While the API is busy (and requests are refused), the probes answer
    // at once.
    let probe = async {
        tokio::time::sleep(WORK / 3).await;
        let asked = Instant::now();
        let ready = client.get(server.url("/healthz")).send().await;
        (ready.map(|r| r.status().as_u16()), asked.elapsed())
    };
    let started = Instant::now();
    let mut refused_in = Vec::new();
    let all = async {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..5 {
            let request = client.get(server.url("/slow")).bearer_auth(&token).send();
            requests.spawn(async move { (request.await, started.elapsed()) });
        }
        requests.join_all().await
    };
    let (answers, (probe_status, probe_took)) = tokio::join!(all, probe);
    let (mut served, mut refused) = (0, 0);
    for (answer, at) in answers {
        let answer = answer.expect("an answer");
        if answer.status() == 200 {
            served += 1;
            assert_eq!(answer.text().await.expect("a body"), "done");
        } else {
            refused += 1;
            refused_in.push(at);
            assert_refused(answer).await;
        }
    }
    assert_eq!((served, refused), (2, 3), "two places, three refused");
    assert_eq!(gauge.most.load(Ordering::SeqCst), 2, "at most two at once");
    for at in refused_in {
        assert!(
            at < WORK / 2,
            "a refusal came after {at:?}, not within the queue"
        );
    }
    assert_eq!(probe_status.expect("a probe answer"), 200);
    assert!(probe_took < WORK, "the probe waited {probe_took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_place_freed_within_the_queue_goes_to_the_waiting_request() {
    let (_stack, gauge, server, token, client) = slow_edge(|c| {
        c.max_in_flight = Some(1);
        c.adaptive_limit = false;
        c.admission_queue = Duration::from_secs(1);
    })
    .await;
    let started = Instant::now();
    for answer in slow_requests(2, &client, &server, &token).await {
        assert_eq!(answer.expect("an answer").status(), 200);
    }
    assert!(started.elapsed() >= WORK * 2, "one after the other");
    assert_eq!(gauge.most.load(Ordering::SeqCst), 1);
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

/// A burst on the routes of one class leaves the places kept for another,
/// and the refusals are counted by class and reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_in_one_class_leaves_the_share_of_another() {
    const PAGES: bff_edge::AdmissionClass = bff_edge::AdmissionClass {
        name: "pages",
        share: 50,
    };
    let stack = testkit::start_demo().await;
    let gauge = Arc::new(Gauge::default());
    let batch = slow_route(gauge.clone());
    let pages = Router::new().route("/page", get(|| async { "page" }));
    let (server, token) = testkit::serve_edge_composed(
        &stack,
        |c| {
            c.max_in_flight = Some(4);
            c.adaptive_limit = false;
            c.admission_queue = Duration::ZERO;
        },
        |edge| edge.authenticated(batch).authenticated_in(PAGES, pages),
    )
    .await;
    let client = reqwest::Client::new();

    let burst = slow_requests(6, &client, &server, &token);
    let pages_meanwhile = async {
        tokio::time::sleep(WORK / 3).await;
        let mut answers = Vec::new();
        for _ in 0..2 {
            let page = client.get(server.url("/page")).bearer_auth(&token).send();
            answers.push(page.await.map(|r| r.status().as_u16()));
        }
        answers
    };
    let (burst, pages) = tokio::join!(burst, pages_meanwhile);
    let mut served = 0;
    for answer in burst {
        let answer = answer.expect("an answer");
        if answer.status() == 200 {
            served += 1;
        } else {
            assert_refused(answer).await;
        }
    }
    assert_eq!(
        served, 2,
        "the default class gets the places not kept for pages"
    );
    for page in pages {
        assert_eq!(page.expect("a page"), 200, "the pages' share was kept");
    }
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("a body");
    // Counters are the process's: other tests here may have added to it.
    let full = metrics
        .lines()
        .filter(|l| {
            l.starts_with("bff_server_refused_total{")
                && l.contains("class=\"default\"")
                && l.contains("reason=\"full\"")
        })
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(
        full.is_some_and(|n| n >= 4.0),
        "four refusals counted: {full:?}\n{metrics}"
    );
}
