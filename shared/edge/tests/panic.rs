//! A handler that panics costs its request a 500 problem+json with the
//! request id, and nothing else: the server keeps serving.

use axum::Router;
use axum::routing::get;
use serde_json::Value;

#[tokio::test]
async fn a_panicking_handler_answers_500_problem_json_and_the_server_keeps_serving() {
    let stack = testkit::start_demo().await;
    let routes = Router::new()
        .route(
            "/boom",
            get(|| async {
                let empty: Vec<u8> = Vec::new();
                // An out-of-bounds index: a bug, not a planned failure.
                format!("{}", empty[usize::from(empty.is_empty())])
            }),
        )
        .route("/fine", get(|| async { "fine" }));
    let (server, token) = testkit::serve_edge(&stack, routes).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client
            .get(server.url("/boom"))
            .bearer_auth(&token)
            .header("x-request-id", "panic-test-1")
            .send()
            .await
            .expect("an answer, not a dropped connection");
        assert_eq!(response.status(), 500);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: Value = response.json().await.expect("problem");
        assert_eq!(body["requestId"], "panic-test-1");
        assert_eq!(body["code"], "internal");
        let fine = client
            .get(server.url("/fine"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("still serving");
        assert_eq!(fine.status(), 200);
    }
}
