//! The plain-HTTP transport against a raw socket server, so that each
//! misbehaviour is exactly what a broken upstream sends: a declared length
//! over the limit, an endless chunked body, a body cut short, a connection
//! closed after each answer. And what every request carries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bff_telemetry::TraceContext;
use bff_upstream::{
    CallContext, Failure, Protocol, Registry, RestClient, UpstreamDecl, UpstreamPolicy,
    UpstreamSettings,
};
use http::{HeaderMap, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn context() -> CallContext {
    CallContext {
        request_id: HeaderValue::from_static("req-7"),
        trace: TraceContext::from_headers(&HeaderMap::new()),
    }
}

fn client(addr: std::net::SocketAddr) -> RestClient {
    let settings = UpstreamSettings {
        decl: UpstreamDecl {
            name: "raw",
            protocol: Protocol::Rest,
            default_url: "http://127.0.0.1:1",
        },
        url: format!("http://{addr}").parse().expect("url"),
        policy: UpstreamPolicy {
            retry: bff_upstream::RetryConfig {
                max_retries: 0,
                ..Default::default()
            },
            coalesce: false,
            ..UpstreamPolicy::default()
        },
    };
    Registry::build(&[settings], Duration::from_millis(300))
        .expect("registry")
        .rest("raw")
        .expect("declared")
}

/// Reads one request head (the tests send no bodies).
async fn read_head(socket: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A server that answers each request with what `answer` returns for it,
/// then closes the connection when `close` says so. Heads are kept.
async fn raw_server(
    answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
    close: bool,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (answer, seen) = (Arc::new(answer), heads.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (answer, seen) = (answer.clone(), seen.clone());
            tokio::spawn(async move {
                while let Some(head) = read_head(&mut socket).await {
                    let out = answer(&head);
                    seen.lock().expect("lock").push(head);
                    if socket.write_all(&out).await.is_err() || close {
                        break;
                    }
                }
            });
        }
    });
    (addr, heads)
}

async fn call(client: &RestClient) -> Result<serde_json::Value, bff_upstream::UpstreamError> {
    client
        .get_json::<serde_json::Value>("op", &context(), &["x"], &[], None)
        .await
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_it_is_read() {
    let (addr, _) = raw_server(
        |_| b"HTTP/1.1 200 OK\r\ncontent-length: 17000000\r\n\r\n{".to_vec(),
        false,
    )
    .await;
    let err = call(&client(addr)).await.expect_err("too large");
    assert_eq!(err.failure, Failure::InvalidResponse);
    assert!(err.to_string().contains("too large"), "{err}");
}

#[tokio::test]
async fn an_endless_chunked_body_is_cut_at_the_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = read_head(&mut socket).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, " ".repeat(1 << 20));
                // 32 MiB: twice what the BFF reads.
                for _ in 0..32 {
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let err = call(&client(addr)).await.expect_err("too large");
    assert_eq!(err.failure, Failure::InvalidResponse);
    assert!(err.to_string().contains("too large"), "{err}");
}

#[tokio::test]
async fn a_body_cut_short_is_unavailable_and_says_why() {
    let (addr, _) = raw_server(
        |_| b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"id\": 1".to_vec(),
        true,
    )
    .await;
    let err = call(&client(addr)).await.expect_err("truncated");
    assert_eq!(err.failure, Failure::Unavailable);
    assert!(err.to_string().len() > "raw: ".len() + 10, "a cause: {err}");
}

#[tokio::test]
async fn connections_closed_after_each_answer_are_replaced_and_requests_say_who_sends_them() {
    let body = br#"{"id": 1}"#;
    let (addr, heads) = raw_server(
        move |_| {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(body);
            out
        },
        true,
    )
    .await;
    let client = client(addr);
    for _ in 0..5 {
        let value = call(&client).await.expect("answered");
        assert_eq!(value["id"], 1);
    }
    let heads = heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 5);
    for head in heads {
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("get /x http/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nuser-agent: bff-gateway/"), "{head}");
        assert!(head.contains(&format!("\r\nhost: {addr}\r\n")), "{head}");
        assert!(head.contains("\r\nx-request-id: req-7\r\n"), "{head}");
        assert!(head.contains("\r\naccept: application/json\r\n"), "{head}");
    }
}
