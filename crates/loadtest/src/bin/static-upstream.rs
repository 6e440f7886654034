//! Static upstream stand-ins: a minimal HTTP/1.1 server answering recorded
//! bodies, with the keep-alive behaviour of a production service. Each
//! connection serves at most `KEEPALIVE_REQUESTS` requests, the last one
//! answered with `Connection: close` (nginx's `keepalive_requests`), and is
//! closed after `IDLE` without a request (nginx's `keepalive_timeout`). So a
//! BFF measured against it pays for reconnecting as it would in production,
//! and no figure depends on the demo services' own behaviour.
//!
//! Usage: static-upstream KEEPALIVE_REQUESTS IDLE_MS LISTEN=FILE=PATH…
//!
//! Every `LISTEN=FILE=PATH` answers `GET PATH` (path and query, exactly) on
//! `LISTEN` with the bytes of `FILE` as `application/json`; any other request
//! on that address gets a 404, so a request the recording does not cover is
//! an error in the harness's figures, never a silent success. Besides,
//! `GET /_static/connections` answers how many connections that address
//! has accepted (not counted as a request of the connection).

use std::cell::Cell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};

/// The path that answers the connections accepted (never a recorded one:
/// the demo services have no such route).
const CONNECTIONS_PATH: &str = "/_static/connections";

/// The recorded bodies of one listening address, by path and query.
type Bodies = HashMap<String, Bytes>;

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "static-upstream: {problem} (usage: static-upstream KEEPALIVE_REQUESTS IDLE_MS LISTEN=FILE=PATH…)"
    );
    ExitCode::from(2)
}

fn answer(bodies: &Bodies, request: &Request<Incoming>, last: bool) -> Response<Full<Bytes>> {
    let key = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut response = match bodies.get(key) {
        Some(body) if request.method() == http::Method::GET => {
            let mut r = Response::new(Full::new(body.clone()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not recorded")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    if last {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Connections accepted on this address since start, the answer to
/// `GET /_static/connections` (text): how many connections a client opened,
/// against the closes the keep-alive limit caused.
async fn serve(listener: tokio::net::TcpListener, bodies: Arc<Bodies>, limit: u32, idle: Duration) {
    let accepted = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let (bodies, accepted) = (bodies.clone(), accepted.clone());
        tokio::spawn(async move {
            let served = Cell::new(0u32);
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                if request.uri().path() == CONNECTIONS_PATH {
                    let count = accepted.load(Ordering::Relaxed).to_string();
                    return std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(
                        Bytes::from(count),
                    ))));
                }
                served.set(served.get() + 1);
                let response = answer(&bodies, &request, served.get() >= limit);
                std::future::ready(Ok::<_, Infallible>(response))
            });
            // The header read timeout doubles as the idle timeout between
            // requests of a kept-alive connection.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(idle)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [limit, idle, routes @ ..] = args.as_slice() else {
        return usage("too few arguments");
    };
    let limit: u32 = match limit.parse() {
        Ok(n) if n > 0 => n,
        _ => {
            return usage(&format!(
                "KEEPALIVE_REQUESTS {limit:?} is not a positive number"
            ));
        }
    };
    let idle = match idle.parse::<u64>() {
        Ok(ms) if ms > 0 => Duration::from_millis(ms),
        _ => return usage(&format!("IDLE_MS {idle:?} is not a positive number")),
    };
    if routes.is_empty() {
        return usage("no LISTEN=FILE=PATH");
    }
    let mut by_listener: HashMap<SocketAddr, Bodies> = HashMap::new();
    for route in routes {
        let mut parts = route.splitn(3, '=');
        // The path last: a query has `=` in it.
        let (Some(listen), Some(file), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return usage(&format!("{route:?} is not LISTEN=FILE=PATH"));
        };
        let listen: SocketAddr = match listen.parse() {
            Ok(a) => a,
            Err(e) => return usage(&format!("LISTEN {listen:?}: {e}")),
        };
        let body = match std::fs::read(file) {
            Ok(b) => Bytes::from(b),
            Err(e) => return usage(&format!("FILE {file:?}: {e}")),
        };
        by_listener
            .entry(listen)
            .or_default()
            .insert(path.to_owned(), body);
    }
    let mut servers = Vec::new();
    for (listen, bodies) in by_listener {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("static-upstream: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        servers.push(tokio::spawn(serve(listener, Arc::new(bodies), limit, idle)));
    }
    for server in servers {
        let _ = server.await;
    }
    ExitCode::SUCCESS
}
