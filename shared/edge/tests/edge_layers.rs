//! The edge's layers over a real server: ETags from the body or from the
//! handler, one tag per content coding, 304s, and bounded method labels in
//! the request metrics.

use axum::Router;
use axum::routing::get;
use bff_edge::etag::{EtagLayer, strong_etag};
use http::{HeaderValue, header};

fn body() -> String {
    // Large and repetitive enough to be compressed.
    "a dashboard line, ".repeat(200)
}

/// A client that asks for no coding and decodes none, whichever reqwest
/// features the rest of the workspace enables: the codings are what these
/// tests look at.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .no_deflate()
        .build()
        .expect("client")
}

async fn serve() -> (demo_services::DemoStack, testkit::TestServer, String) {
    let stack = testkit::start_demo().await;
    let routes = Router::new()
        .route("/plain", get(|| async { body() }))
        .route(
            "/tagged",
            get(|| async {
                (
                    [(header::ETAG, HeaderValue::from_static("\"fixed\""))],
                    body(),
                )
            }),
        )
        .layer(EtagLayer);
    let (server, token) = testkit::serve_edge(&stack, routes).await;
    (stack, server, token)
}

#[tokio::test]
async fn a_body_is_tagged_per_coding_and_a_matching_tag_gets_304() {
    let (_stack, server, token) = serve().await;
    let client = client();
    let tag = strong_etag(body().as_bytes());
    let tag = tag.to_str().expect("ascii");

    let plain = client
        .get(server.url("/plain"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answer");
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()[header::ETAG], tag);
    assert_eq!(plain.headers()[header::CACHE_CONTROL], "private, no-cache");
    assert!(plain.headers().contains_key("x-request-id"));
    assert_eq!(plain.text().await.expect("body"), body());

    let gzip_tag = format!("{}-gzip\"", &tag[..tag.len() - 1]);
    let gzip = client
        .get(server.url("/plain"))
        .bearer_auth(&token)
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .expect("answer");
    assert_eq!(gzip.status(), 200);
    assert_eq!(gzip.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(gzip.headers()[header::ETAG], gzip_tag.as_str());

    // The identity tag revalidates the gzip representation and the other
    // way round; the 304 repeats the tag the client holds.
    for (held, coding) in [(tag, "gzip"), (gzip_tag.as_str(), "identity")] {
        let revalidated = client
            .get(server.url("/plain"))
            .bearer_auth(&token)
            .header(header::ACCEPT_ENCODING, coding)
            .header(header::IF_NONE_MATCH, held)
            .send()
            .await
            .expect("answer");
        assert_eq!(revalidated.status(), 304, "{held} with {coding}");
        assert_eq!(revalidated.headers()[header::ETAG], held);
        assert!(revalidated.bytes().await.expect("body").is_empty());
    }

    let other = client
        .get(server.url("/plain"))
        .bearer_auth(&token)
        .header(header::IF_NONE_MATCH, "\"something-else\"")
        .send()
        .await
        .expect("answer");
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn a_handler_set_tag_is_kept_and_revalidated() {
    let (_stack, server, token) = serve().await;
    let client = client();
    let tagged = client
        .get(server.url("/tagged"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answer");
    assert_eq!(tagged.status(), 200);
    assert_eq!(tagged.headers()[header::ETAG], "\"fixed\"");
    let revalidated = client
        .get(server.url("/tagged"))
        .bearer_auth(&token)
        .header(header::IF_NONE_MATCH, "W/\"fixed\"")
        .send()
        .await
        .expect("answer");
    assert_eq!(revalidated.status(), 304);
    // Without a token the API layer refuses before the handler runs.
    let refused = client
        .get(server.url("/tagged"))
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key(header::WWW_AUTHENTICATE));
}

#[tokio::test]
async fn an_invented_method_is_one_series_not_one_per_name() {
    let (_stack, server, token) = serve().await;
    let client = client();
    for name in ["PURGE", "FROBNICATE"] {
        let method = reqwest::Method::from_bytes(name.as_bytes()).expect("method");
        let answer = client
            .request(method, server.url("/plain"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("answer");
        assert_eq!(answer.status(), 405, "{name}");
    }
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("metrics");
    let series = |needle: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("http_server_request_duration_seconds_count") && l.contains(needle)
            })
            .count()
    };
    assert!(series("http_request_method=\"_OTHER\"") >= 1, "{metrics}");
    assert_eq!(series("PURGE") + series("FROBNICATE"), 0, "{metrics}");
}
