//! Serving and draining.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::serve::{Listener, ListenerExt};
use bff_telemetry::names;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::config::{Args, BffConfig, BffSpec};
use crate::shared::{Shared, StartError};

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// right after start-up is not lost to the default action.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    // Each on its own: a shell may start a background job with SIGINT
    // ignored, and that must not cost us SIGTERM.
    let term = signal(SignalKind::terminate())
        .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGTERM"))
        .ok();
    let interrupt = signal(SignalKind::interrupt())
        .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGINT"))
        .ok();
    async move {
        let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(term) => {}
            () = wait(interrupt) => {}
        }
    }
}

/// Serves `app` (HTTP/1.1 and h2c) until `shutdown` resolves, then stops
/// accepting and gives in-flight requests up to `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (draining_tx, mut draining_rx) = tokio::sync::watch::channel(false);
    // The peer address keys the rate limit of unauthenticated requests.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    // `tap_io` only to keep axum's `ConnectInfo<SocketAddr>` for a wrapped
    // listener (axum implements it for plain and tapped listeners).
    let listener = Counted(listener).tap_io(|_| {});
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutdown signal received; draining");
        let _ = draining_tx.send(true);
    });
    tokio::select! {
        result = server.into_future() => result,
        () = async {
            let _ = draining_rx.wait_for(|draining| *draining).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "in-flight requests did not finish within the grace period");
            Ok(())
        }
    }
}

/// Binds `config.listen` with the configured socket options: the send
/// buffer (`BFF_SEND_BUFFER`) is set on the listener, whose accepted
/// connections inherit it. It bounds what the kernel holds for a client
/// that stops reading (a live stream): by default Linux lets each
/// connection's buffer grow to `tcp_wmem`'s maximum (4 MiB).
///
/// # Errors
/// When the address cannot be bound or the option not set.
pub async fn bind(config: &BffConfig) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(config.listen).await?;
    if let Some(bytes) = config.send_buffer {
        socket2::SockRef::from(&listener).set_send_buffer_size(bytes)?;
    }
    Ok(listener)
}

/// A listener that counts its open connections (`bff.server.connections`).
struct Counted(TcpListener);

impl Listener for Counted {
    type Io = CountedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CountedIo, SocketAddr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        let gauge = metrics::gauge!(names::SERVER_CONNECTIONS);
        gauge.increment(1.0);
        (CountedIo { io, gauge }, addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Listener::local_addr(&self.0)
    }
}

pin_project_lite::pin_project! {
    /// A connection, counted until it is dropped.
    struct CountedIo {
        #[pin]
        io: TcpStream,
        gauge: metrics::Gauge,
    }

    impl PinnedDrop for CountedIo {
        fn drop(this: Pin<&mut Self>) {
            this.gauge.decrement(1.0);
        }
    }
}

impl AsyncRead for CountedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// The whole life of a BFF binary: arguments and configuration (exit 2 on a
/// bad value), logging, the app from `build`, bind (exit 1 on failure),
/// serve until SIGTERM, drain, exit 0.
pub fn run_main<F, Fut>(spec: BffSpec, build: F) -> ExitCode
where
    F: FnOnce(Shared) -> Fut,
    Fut: Future<Output = Result<Router, StartError>>,
{
    let args = match Args::parse(spec, std::env::args().skip(1)) {
        Ok(args) => args,
        // --help and --version, or a usage error (exit 2, as clap's own).
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let health_check = args.health_check;
    let config = match BffConfig::load(spec, args.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{}: configuration error: {error}", spec.name);
            return ExitCode::from(2);
        }
    };
    if health_check {
        return match crate::health::probe_ready(config.listen, Duration::from_secs(2)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{}: not ready: {error}", spec.name);
                ExitCode::FAILURE
            }
        };
    }
    let telemetry = match bff_telemetry::init(&bff_telemetry::Options {
        service_name: spec.name.to_owned(),
        service_version: spec.version.to_owned(),
        log_format: config.log_format,
        log_filter: config.log_filter.clone(),
        export: config.telemetry.clone(),
        log_to_stderr: false,
    }) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("{}: {error}", spec.name);
            return ExitCode::FAILURE;
        }
    };
    let code = serve_until_signal(spec, config, build);
    // Off the server's runtime (it has stopped): flushing blocks.
    telemetry.shutdown();
    code
}

/// The runtime: one worker per CPU this process may use (its affinity mask
/// and cgroup quota, or `TOKIO_WORKER_THREADS`), and on one CPU a
/// current-thread runtime. With a single worker, the multi-threaded
/// scheduler only adds cost: the accept loop runs on the main thread, and
/// every hand-over between it, the worker and the I/O driver is a wake-up
/// through the kernel (measured: the dashboard's CPU per request, open loop,
/// in BENCHMARKS.md). On one thread, the thread that polls epoll runs the
/// tasks it wakes.
fn runtime() -> tokio::runtime::Builder {
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    }
}

fn serve_until_signal<F, Fut>(spec: BffSpec, config: BffConfig, build: F) -> ExitCode
where
    F: FnOnce(Shared) -> Fut,
    Fut: Future<Output = Result<Router, StartError>>,
{
    let runtime = match runtime().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{}: cannot start the runtime: {error}", spec.name);
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listen = config.listen;
        let grace = config.shutdown_grace;
        let config_for_bind = config.clone();
        let signal = shutdown_signal();
        let shared = match Shared::new(config) {
            Ok(shared) => shared,
            Err(error) => {
                tracing::error!(%error, "start-up failed");
                eprintln!("{}: {error}", spec.name);
                return ExitCode::FAILURE;
            }
        };
        let streams = shared.streams().clone();
        let app = match build(shared).await {
            Ok(app) => app,
            Err(error) => {
                eprintln!("{}: {error}", spec.name);
                return ExitCode::FAILURE;
            }
        };
        let listener = match bind(&config_for_bind).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("{}: cannot listen on {listen}: {error}", spec.name);
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(%listen, "serving");
        // Live streams are told first: they end with a reason, so the
        // connections they hold can close within the grace period.
        let draining = streams.clone();
        let signal = async move {
            signal.await;
            draining.drain();
        };
        let served = serve(listener, app, signal, grace).await;
        // WebSockets live on after their HTTP connection: wait for them too.
        if tokio::time::timeout(grace, streams.drained())
            .await
            .is_err()
        {
            tracing::warn!(
                open = streams.open(),
                "live streams did not end within the grace period"
            );
        }
        match served {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{}: server error: {error}", spec.name);
                ExitCode::FAILURE
            }
        }
    })
}
