//! The log of the `bff-mobile` binary at `debug`, in JSON: one line per
//! request with its trace and span ids, and nothing secret or personal in
//! any line (tokens, the Authorization header, cookies, query strings,
//! user ids), whatever the request carried.

use demo_services::ServiceName;
use serde_json::Value;
use testkit::BffProcess;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_request_with_trace_ids_and_no_secrets() {
    let stack = testkit::start_demo().await;
    let token = testkit::user_token(&stack, "user0001", "bff-mobile", None);
    let user_id = stack.data().users()[0].id.to_string();
    let bff = BffProcess::start(
        env!("CARGO_BIN_EXE_bff-mobile"),
        &stack,
        &[
            ServiceName::User,
            ServiceName::Order,
            ServiceName::Recommendation,
        ],
        &[("RUST_LOG", "debug")],
    )
    .await;
    let client = reqwest::Client::new();
    let forged = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJGT1JHRURTVUJKRUNUIn0.Rk9SR0VEU0lHTkFUVVJF";
    let requests = [
        client
            .get(bff.url("/v1/dashboard"))
            .bearer_auth(&token)
            .header("traceparent", format!("00-{TRACE_ID}-b7ad6b7169203331-01"))
            .header("x-request-id", "req-log-1"),
        client.get(bff.url("/v1/dashboard")).bearer_auth(forged),
        client
            .get(bff.url("/v1/dashboard?access_token=QUERYSECRET123&password=hunter2"))
            .bearer_auth(&token)
            .header("cookie", "session=COOKIESECRET"),
        client
            .get(bff.url("/v1/dashboard"))
            .header("authorization", "Basic dXNlcjpodW50ZXIy"),
        client.get(bff.url("/v1/nothing-here")),
    ];
    let expected = [200, 401, 400, 401, 404];
    for (request, status) in requests.into_iter().zip(expected) {
        assert_eq!(request.send().await.expect("request").status(), status);
    }
    let (code, log) = bff.stop().await;
    assert_eq!(code, Some(0));

    let mut request_lines = Vec::new();
    for line in log.lines() {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for secret in [
            token.as_str(),
            token.rsplit('.').next().unwrap_or_default(),
            forged,
            "Rk9SR0VEU0lHTkFUVVJF",
            "QUERYSECRET123",
            "hunter2",
            "dXNlcjpodW50ZXIy",
            "COOKIESECRET",
            "Bearer",
            &user_id,
        ] {
            assert!(
                !line.contains(secret),
                "{secret:?} leaked into the log: {line}"
            );
        }
        if entry["message"] == "request" {
            request_lines.push(entry);
        }
    }
    assert_eq!(
        request_lines.len(),
        expected.len(),
        "one line per request:\n{log}"
    );
    assert!(
        log.lines()
            .filter(|l| l.contains("\"level\":\"DEBUG\""))
            .count()
            >= 5,
        "the debug log was checked, not an empty one:\n{log}"
    );
    for (entry, status) in request_lines.iter().zip(expected) {
        assert_eq!(entry["level"], "INFO");
        assert_eq!(entry["http.response.status_code"], status, "{entry}");
        let span = &entry["span"];
        let trace_id = span["trace_id"].as_str().expect("trace_id");
        let span_id = span["span_id"].as_str().expect("span_id");
        assert!(
            trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{entry}"
        );
        assert!(
            span_id.len() == 16 && span_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{entry}"
        );
        assert_eq!(
            span["url.path"].as_str().map(|p| p.contains('?')),
            Some(false),
            "{entry}"
        );
    }
    let first = &request_lines[0]["span"];
    assert_eq!(
        first["trace_id"], TRACE_ID,
        "the caller's trace is continued"
    );
    assert_eq!(first["request_id"], "req-log-1");
    assert_eq!(first["http.route"], "/v1/dashboard");
    assert_ne!(request_lines[1]["span"]["trace_id"], TRACE_ID);
}
