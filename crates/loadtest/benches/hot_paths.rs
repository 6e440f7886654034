//! Micro-benchmarks of the per-request hot pieces: token verification (each
//! algorithm), decoding the upstream payloads of a mobile dashboard, the
//! strong ETag, and br/gzip compression of a dashboard body.
//!
//! `cargo bench -p loadtest`

use std::hint::black_box;
use std::time::Duration;

use bff_auth::{AuthConfig, Authenticator};
use bff_clients::models::{OrderPage, RecommendationList, User};
use bff_upstream::HttpClient;
use criterion::{Criterion, criterion_group, criterion_main};
use demo_services::DemoData;
use demo_services::data::DEFAULT_SEED;
use jsonwebtoken::Algorithm;
use testkit::{JwksServer, TEST_ISSUER, TestClaims};
use tokio::io::AsyncWriteExt;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn tokens(c: &mut Criterion) {
    let rt = runtime();
    let (jwks, auth) = rt.block_on(async {
        let jwks = JwksServer::start().await;
        let auth = Authenticator::start(
            AuthConfig::new(jwks.jwks_url(), TEST_ISSUER, "bff-mobile"),
            HttpClient::new(Duration::from_secs(1)).expect("client"),
        );
        while !auth.is_ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (jwks, auth)
    });
    let claims = TestClaims::new(
        "bff-mobile",
        "6f1c0d7e-1111-4222-8333-944455556666",
        "profile orders live",
    );
    // The signature check itself, which the first sight of a token pays.
    let mut group = c.benchmark_group("signature check");
    for (name, alg) in [
        ("RS256", Algorithm::RS256),
        ("ES256", Algorithm::ES256),
        ("EdDSA", Algorithm::EdDSA),
    ] {
        let token = jwks.mint_with(alg, &claims);
        let key = jsonwebtoken::DecodingKey::from_jwk(jwks.key(alg).jwk()).expect("key");
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_audience(&["bff-mobile"]);
        validation.set_issuer(&[TEST_ISSUER]);
        group.bench_function(name, |b| {
            b.iter(|| {
                jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &key, &validation)
                    .expect("valid")
            })
        });
    }
    group.finish();
    // What every later request with the same token pays.
    let token = jwks.mint(&claims);
    c.bench_function("verify a remembered token", |b| {
        b.iter(|| rt.block_on(auth.verify(black_box(&token))).expect("valid"))
    });
}

struct Payloads {
    user: Vec<u8>,
    orders: Vec<u8>,
    recommendations: Vec<u8>,
}

fn payloads() -> Payloads {
    let data = DemoData::generate(DEFAULT_SEED);
    let user = &data.users()[0];
    let orders: Vec<_> = data.orders_of(&user.id).expect("orders").take(5).collect();
    let recs = &data.recommendations_for(&user.id).expect("recs")[..3];
    Payloads {
        user: serde_json::to_vec(user).expect("json"),
        orders: serde_json::to_vec(&serde_json::json!({ "user_id": user.id, "total": 11, "limit": 5, "offset": 0, "orders": orders }))
            .expect("json"),
        recommendations: serde_json::to_vec(&serde_json::json!({ "user_id": user.id, "model_version": "x", "recommendations": recs }))
            .expect("json"),
    }
}

fn decoding(c: &mut Criterion) {
    let p = payloads();
    c.bench_function("decode dashboard upstream payloads", |b| {
        b.iter(|| {
            let u: User = serde_json::from_slice(black_box(&p.user)).expect("user");
            let o: OrderPage = serde_json::from_slice(black_box(&p.orders)).expect("orders");
            let r: RecommendationList =
                serde_json::from_slice(black_box(&p.recommendations)).expect("recs");
            (u, o, r)
        })
    });
}

/// A dashboard-sized JSON body (what bff-mobile answers).
fn dashboard_body() -> Vec<u8> {
    let p = payloads();
    let user: serde_json::Value = serde_json::from_slice(&p.user).expect("json");
    serde_json::to_vec(&serde_json::json!({
        "user": { "id": user["id"], "name": user["display_name"], "avatarUrl": user["avatar_url"], "preferences": user["preferences"]["currency"] },
        "recentOrders": (0..5).map(|i| serde_json::json!({ "id": format!("760860da-ff6b-405b-bbda-afee56ac322{i}"), "status": "delivered", "placedAt": "2026-10-13", "totalMinor": 12345, "currency": "EUR", "itemCount": 3, "thumbnailUrl": "https://img.example.com/products/eb1d3ba8-5679-467e-99c0-3c534020e37a/0.jpg?w=80&q=75" })).collect::<Vec<_>>(),
        "recommendations": (0..3).map(|i| serde_json::json!({ "productId": format!("8ba5f1a9-b2a6-4513-9c7b-8f6fc45d773{i}"), "name": "Contoso Modular Kettle", "priceMinor": 4999, "currency": "EUR", "imageUrl": "https://img.example.com/products/8ba5f1a9/0.jpg?w=240&q=75" })).collect::<Vec<_>>(),
        "metadata": { "timestamp": "2026-11-28T05:00:00Z", "partialFailures": 0, "degraded": [], "stale": [], "reasons": {} }
    }))
    .expect("json")
}

fn etag_and_compression(c: &mut Criterion) {
    let body = dashboard_body();
    c.bench_function("strong ETag of a dashboard", |b| {
        b.iter(|| bff_edge::etag::strong_etag(black_box(&body)))
    });
    let rt = runtime();
    let mut group = c.benchmark_group("compress a dashboard");
    group.bench_function("br (level 4)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut enc = async_compression::tokio::write::BrotliEncoder::with_quality(
                    Vec::new(),
                    async_compression::Level::Precise(4),
                );
                enc.write_all(black_box(&body)).await.expect("write");
                enc.shutdown().await.expect("finish");
                enc.into_inner()
            })
        })
    });
    group.bench_function("gzip (default)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut enc = async_compression::tokio::write::GzipEncoder::new(Vec::new());
                enc.write_all(black_box(&body)).await.expect("write");
                enc.shutdown().await.expect("finish");
                enc.into_inner()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, tokens, decoding, etag_and_compression);
criterion_main!(benches);
