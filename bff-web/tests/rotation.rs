//! Signing keys rotated through the control API while requests flow with
//! old and new tokens: not one valid request fails. The provider publishes
//! each new key ahead of its use (`key_publish_ahead`), and the BFF
//! refetches its JWKS for an unknown `kid` at most every
//! `BFF_JWKS_MIN_REFETCH`; publishing ahead by more than that is what makes
//! the first token of a new key verify at once.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use demo_services::DemoConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_keys_under_load_fails_no_valid_request() {
    let stack = testkit::start_demo_with(DemoConfig {
        key_publish_ahead: Duration::from_millis(800),
        ..DemoConfig::ephemeral()
    })
    .await;
    let config = testkit::bff_config_with(
        &stack,
        bff_web::SPEC,
        &[
            ("BFF_JWKS_MIN_REFETCH", "300ms"),
            ("BFF_RATE_LIMITS", "off"),
        ],
    );
    let server = testkit::start_bff(config, bff_web::app).await;
    let stack = Arc::new(stack);
    let product = stack.data().products()[0].id;
    let url = server.url(&format!(
        "/v1/products/{product}?includeReviews=false&includeInventory=false"
    ));
    let tokens = Arc::new(Mutex::new(vec![testkit::user_token(
        &stack, "user0001", "bff-web", None,
    )]));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let failures = Arc::new(Mutex::new(Vec::new()));

    // Four clients, each using every token minted so far in turn.
    let mut load = Vec::new();
    for worker in 0..4usize {
        let (url, tokens, stop) = (url.clone(), tokens.clone(), stop.clone());
        let (ok, failed, failures) = (ok.clone(), failed.clone(), failures.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                let token = {
                    let tokens = tokens.lock().expect("tokens");
                    tokens[n % tokens.len()].clone()
                };
                n += 1;
                let response = client.get(&url).bearer_auth(&token).send().await;
                match response {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        failures
                            .lock()
                            .expect("failures")
                            .push(format!("{status} {body}"));
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures.lock().expect("failures").push(e.to_string());
                    }
                }
            }
        }));
    }

    // Three rotations through the control API, a new token every 100 ms.
    let control = reqwest::Client::new();
    for _ in 0..3 {
        let response = control
            .post(format!("{}/identity/rotate-keys", stack.control_url()))
            .send()
            .await
            .expect("rotate");
        assert_eq!(response.status(), 200);
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            let stack = stack.clone();
            let token = tokio::task::spawn_blocking(move || {
                testkit::user_token(&stack, "user0001", "bff-web", None)
            })
            .await
            .expect("minted");
            tokens.lock().expect("tokens").push(token);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load");
    }

    let kids: BTreeSet<String> = tokens
        .lock()
        .expect("tokens")
        .iter()
        .filter_map(|t| jsonwebtoken::decode_header(t).ok()?.kid)
        .collect();
    assert!(kids.len() >= 4, "tokens of every key generation: {kids:?}");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 200, "the load ran: {ok} requests");
    assert_eq!(
        failed,
        0,
        "{failed} of {} valid requests failed: {:?}",
        ok + failed,
        failures
            .lock()
            .expect("failures")
            .iter()
            .take(3)
            .collect::<Vec<_>>()
    );
}
