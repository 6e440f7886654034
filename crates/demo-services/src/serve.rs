//! The accept loop every demo service runs on.
//!
//! It exists instead of `axum::serve` for one reason: fault injection must be
//! able to *reset* the TCP connection a request arrived on (RST, not a clean
//! close), which needs the socket itself. Each connection gets a
//! [`ConnectionControl`] in its requests' extensions; a middleware that fires
//! it makes this loop abort the connection with `SO_LINGER = 0`.

use std::convert::Infallible;
use std::net::TcpStream as StdTcpStream;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A handle on the connection a request came in on.
#[derive(Clone, Debug, Default)]
pub struct ConnectionControl {
    reset: Arc<Notify>,
}

impl ConnectionControl {
    /// Aborts the connection with a TCP reset as soon as the accept loop sees it.
    pub fn reset(&self) {
        self.reset.notify_one();
    }
}

/// Serves `router` on `listener` (HTTP/1.1 and h2c, so gRPC too) until
/// `shutdown` is cancelled; then stops accepting and gives open connections a
/// moment to finish.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: back off, do not spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        connections.spawn(serve_connection(stream, router.clone(), shutdown.clone()));
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
}

async fn serve_connection(stream: TcpStream, router: Router, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    // Keep a second handle on the socket so that it can be reset after hyper
    // owns the stream.
    let (stream, handle) = match split_handle(stream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::warn!(%error, "could not prepare connection");
            return;
        }
    };
    let control = ConnectionControl::default();
    let reset = control.reset.clone();
    let service = router.map_request(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(control.clone());
        req.map(Body::new)
    });
    let service = TowerToHyperService::new(service.map_err(|e: Infallible| match e {}));
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = reset.notified() => {
            let _ = socket2::SockRef::from(&handle).set_linger(Some(Duration::ZERO));
            // Dropping both the connection and the handle closes the socket;
            // with a zero linger the kernel sends RST.
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }
}

fn split_handle(stream: TcpStream) -> std::io::Result<(TcpStream, StdTcpStream)> {
    let std_stream = stream.into_std()?;
    let handle = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, handle))
}
