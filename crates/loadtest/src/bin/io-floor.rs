//! The I/O floor of the mobile dashboard: for every request, the same three
//! keep-alive upstream GETs bff-mobile makes, their bodies read but not
//! parsed, and a constant body of the BFF's size as the answer. No token
//! check, no JSON, no shaping: what accepting a request, three pooled
//! upstream round trips and one response cost on this machine. The harness
//! reads every bff-mobile figure against it (scenario 1).
//!
//! Usage: io-floor LISTEN BODY_BYTES URL…

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

struct Floor {
    client: Client<HttpConnector, Empty<Bytes>>,
    upstreams: Vec<Uri>,
    body: Bytes,
}

async fn fetch(floor: &Floor, uri: &Uri) -> Result<usize, String> {
    let response = floor
        .client
        .get(uri.clone())
        .await
        .map_err(|e| format!("{uri}: {e}"))?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{uri}: {e}"))?;
    Ok(body.to_bytes().len())
}

async fn handle(floor: Arc<Floor>) -> Response<Full<Bytes>> {
    let calls = floor.upstreams.iter().map(|uri| fetch(&floor, uri));
    let results = futures::future::join_all(calls).await;
    let mut response = if results.iter().all(Result::is_ok) {
        Response::new(Full::new(floor.body.clone()))
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"upstream failed")));
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        r
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("io-floor: {problem} (usage: io-floor LISTEN BODY_BYTES URL…)");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, size, urls @ ..] = args.as_slice() else {
        return usage("too few arguments");
    };
    let listen: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => return usage(&format!("LISTEN {listen:?}: {e}")),
    };
    let size: usize = match size.parse() {
        Ok(s) => s,
        Err(e) => return usage(&format!("BODY_BYTES {size:?}: {e}")),
    };
    let mut upstreams = Vec::new();
    for url in urls {
        match url.parse::<Uri>() {
            Ok(uri) => upstreams.push(uri),
            Err(e) => return usage(&format!("URL {url:?}: {e}")),
        }
    }
    if upstreams.is_empty() {
        return usage("no upstream URL");
    }
    let floor = Arc::new(Floor {
        client: Client::builder(TokioExecutor::new()).build_http(),
        upstreams,
        body: Bytes::from(vec![b' '; size]),
    });
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("io-floor: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let floor = floor.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request: Request<Incoming>| {
                let floor = floor.clone();
                async move { Ok::<_, Infallible>(handle(floor).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
