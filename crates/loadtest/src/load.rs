//! The load generator: HTTP/1.1 keep-alive connections on hyper, driven
//! closed-loop (N workers as fast as the server answers: throughput) or
//! open-loop (a fixed schedule of arrivals: latency without coordinated
//! omission, since each latency is measured from when the request was *due*,
//! not from when a busy generator got round to sending it).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One request of a workload.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where.
    pub addr: SocketAddr,
    /// Method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Extra headers (authorization, …).
    pub headers: HeaderMap,
    /// Body (empty for GET).
    pub body: Bytes,
}

impl Target {
    /// A GET of `path` on `addr`.
    pub fn get(addr: SocketAddr, path: impl Into<String>) -> Self {
        Target {
            addr,
            method: Method::GET,
            path: path.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    fn request(&self) -> Result<Request<Full<Bytes>>, String> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header("host", self.addr.to_string());
        for (k, v) in &self.headers {
            builder = builder.header(k, v);
        }
        builder
            .body(Full::new(self.body.clone()))
            .map_err(|e| e.to_string())
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of each iteration, microseconds.
    pub latency: Histogram<u64>,
    /// Iterations whose every response was 2xx/3xx.
    pub ok: u64,
    /// Iterations with an error status or a transport error.
    pub errors: u64,
    /// Of `errors`, those answered 503 (a server refusing work past its
    /// limit): their latency is also in `refused_latency`.
    pub refused: u64,
    /// Latency of the refused iterations, microseconds.
    pub refused_latency: Histogram<u64>,
    /// The same from when the generator sent them rather than from when
    /// they were due: what the server took, without the generator's own
    /// lateness.
    pub refused_service: Histogram<u64>,
    /// Open loop: arrivals dropped because too many were outstanding.
    pub dropped: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Response bytes received.
    pub bytes: u64,
    /// Open loop: the `STALL_WINDOW`s of the run (by scheduled arrival) in
    /// which some arrival waited over `STALL_LATENCY` for its answer. A
    /// tail made of a few such windows is a stall the server fell into and
    /// worked off, not a slow request now and then.
    pub stalled: std::collections::BTreeSet<u64>,
    /// Open loop: the most an arrival was sent after its scheduled time.
    pub late: Duration,
    /// Calls the demo services received during the run (their control
    /// API's `/stats`), when they could be read.
    pub upstream_calls: Option<u64>,
}

/// The width of the windows `Stats::stalled` counts.
pub const STALL_WINDOW: Duration = Duration::from_millis(250);
/// The latency that marks a window as stalled.
pub const STALL_LATENCY: Duration = Duration::from_millis(50);

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// How one iteration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Every response 2xx or 3xx.
    Ok,
    /// Some response 503, none worse.
    Refused,
    /// Some other error status, or a transport error.
    Failed,
}

impl Stats {
    fn new() -> Self {
        Stats {
            latency: histogram(),
            ok: 0,
            errors: 0,
            refused: 0,
            refused_latency: histogram(),
            refused_service: histogram(),
            dropped: 0,
            elapsed: Duration::ZERO,
            bytes: 0,
            stalled: std::collections::BTreeSet::new(),
            late: Duration::ZERO,
            upstream_calls: None,
        }
    }

    fn merge(&mut self, other: &Stats) {
        let _ = self.latency.add(&other.latency);
        let _ = self.refused_latency.add(&other.refused_latency);
        let _ = self.refused_service.add(&other.refused_service);
        self.ok += other.ok;
        self.errors += other.errors;
        self.refused += other.refused;
        self.dropped += other.dropped;
        self.bytes += other.bytes;
        self.stalled.extend(&other.stalled);
        self.late = self.late.max(other.late);
    }

    /// How long the open-loop run was stalled (see `stalled`).
    pub fn stalled_for(&self) -> Duration {
        STALL_WINDOW * self.stalled.len() as u32
    }

    /// Completed iterations per second.
    pub fn throughput(&self) -> f64 {
        (self.ok + self.errors) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency percentile in milliseconds.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// A percentile of the refused iterations' latency, in milliseconds.
    pub fn refused_percentile_ms(&self, q: f64) -> f64 {
        self.refused_latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// Successful iterations per second.
    pub fn ok_per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A percentile of the refused iterations' time from their sending,
    /// in milliseconds.
    pub fn refused_service_ms(&self, q: f64) -> f64 {
        self.refused_service.value_at_quantile(q) as f64 / 1000.0
    }

    fn record(&mut self, outcome: Outcome, latency_us: u64, service_us: u64, bytes: u64) {
        let _ = self.latency.record(latency_us);
        self.bytes += bytes;
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Refused => {
                self.errors += 1;
                self.refused += 1;
                let _ = self.refused_latency.record(latency_us);
                let _ = self.refused_service.record(service_us);
            }
            Outcome::Failed => self.errors += 1,
        }
    }
}

type Conn = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Conn, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// `n` requests of `target` one after the other on one keep-alive
/// connection (what an instruction count per request is measured over);
/// any answer but 2xx is an error.
pub async fn sequential(target: &Target, n: usize) -> Result<(), String> {
    let mut conn = connect(target.addr).await?;
    for i in 0..n {
        conn.ready()
            .await
            .map_err(|e| format!("request {i}: the connection closed: {e}"))?;
        let response = conn
            .send_request(target.request()?)
            .await
            .map_err(|e| format!("request {i}: {e}"))?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("request {i}: {e}"))?;
        if !status.is_success() {
            return Err(format!("request {i} of {}: {status}", target.path));
        }
    }
    Ok(())
}

/// One connection per target of a workload.
struct Worker {
    conns: Vec<Option<Conn>>,
}

impl Worker {
    fn new(n: usize) -> Self {
        Worker {
            conns: (0..n).map(|_| None).collect(),
        }
    }

    /// Runs every target concurrently.
    async fn iterate(&mut self, targets: &[Target]) -> (Outcome, u64) {
        let futures = self
            .conns
            .iter_mut()
            .zip(targets)
            .map(|(slot, target)| async move {
                if slot.as_ref().is_none_or(|c| c.is_closed()) {
                    *slot = connect(target.addr).await.ok();
                }
                let Some(conn) = slot.as_mut() else {
                    return (Outcome::Failed, 0);
                };
                if conn.ready().await.is_err() {
                    *slot = None;
                    return (Outcome::Failed, 0);
                }
                let Ok(request) = target.request() else {
                    return (Outcome::Failed, 0);
                };
                match conn.send_request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let outcome = if status.is_success() || status.is_redirection() {
                            Outcome::Ok
                        } else if status == http::StatusCode::SERVICE_UNAVAILABLE {
                            Outcome::Refused
                        } else {
                            Outcome::Failed
                        };
                        match response.into_body().collect().await {
                            Ok(body) => (outcome, body.to_bytes().len() as u64),
                            Err(_) => {
                                *slot = None;
                                (Outcome::Failed, 0)
                            }
                        }
                    }
                    Err(_) => {
                        *slot = None;
                        (Outcome::Failed, 0)
                    }
                }
            });
        let results = futures::future::join_all(futures).await;
        // The worst outcome of the iteration's requests.
        let outcome = results
            .iter()
            .map(|(o, _)| *o)
            .max_by_key(|o| match o {
                Outcome::Ok => 0,
                Outcome::Refused => 1,
                Outcome::Failed => 2,
            })
            .unwrap_or(Outcome::Ok);
        (outcome, results.iter().map(|(_, b)| b).sum())
    }
}

/// Workloads to take in turn, one per iteration (each the same number of
/// targets on the same addresses, so a worker's connections serve all):
/// many users' dashboards, say, so that no cache serves them all.
pub type Mix = Arc<Vec<Arc<Vec<Target>>>>;

/// The next workload of `mix`, in turn.
fn pick<'a>(mix: &'a Mix, turn: &std::sync::atomic::AtomicUsize) -> &'a Arc<Vec<Target>> {
    let i = turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    &mix[i % mix.len()]
}

/// `workers` loops, each running the workload back to back for `duration`.
pub async fn closed_loop(targets: Arc<Vec<Target>>, workers: usize, duration: Duration) -> Stats {
    closed_loop_mix(Arc::new(vec![targets]), workers, duration).await
}

/// [`closed_loop`] over the workloads of `mix`, in turn.
pub async fn closed_loop_mix(mix: Mix, workers: usize, duration: Duration) -> Stats {
    let started = Instant::now();
    let deadline = started + duration;
    let width = mix.first().map_or(0, |t| t.len());
    let turn = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (mix, turn) = (mix.clone(), turn.clone());
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::new();
            let mut worker = Worker::new(width);
            while Instant::now() < deadline {
                let t = Instant::now();
                let targets = pick(&mix, &turn);
                let (outcome, bytes) = worker.iterate(targets).await;
                let took = t.elapsed().as_micros().max(1) as u64;
                stats.record(outcome, took, took, bytes);
            }
            stats
        }));
    }
    let mut total = Stats::new();
    for task in tasks {
        if let Ok(stats) = task.await {
            total.merge(&stats);
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// Arrivals at `rate` per second for `duration`; each latency counts from
/// the arrival's scheduled time. At most `max_outstanding` in flight; later
/// arrivals are dropped and counted.
pub async fn open_loop(
    targets: Arc<Vec<Target>>,
    rate: f64,
    duration: Duration,
    max_outstanding: usize,
) -> Stats {
    open_loop_mix(Arc::new(vec![targets]), rate, duration, max_outstanding).await
}

/// [`open_loop`] over the workloads of `mix`, in turn.
pub async fn open_loop_mix(
    mix: Mix,
    rate: f64,
    duration: Duration,
    max_outstanding: usize,
) -> Stats {
    let width = mix.first().map_or(0, |t| t.len());
    let turn = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pool: Arc<Mutex<Vec<Worker>>> = Arc::default();
    let stats = Arc::new(Mutex::new(Stats::new()));
    let outstanding = Arc::new(tokio::sync::Semaphore::new(max_outstanding));
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let arrivals = (rate * duration.as_secs_f64()).round() as u64;
    let started = tokio::time::Instant::now();
    let mut latest = Duration::ZERO;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..arrivals {
        let due = started + period.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        // A generator that wakes late sends the arrivals it owes at once:
        // a burst the server sees, said in the report.
        latest = latest.max(due.elapsed());
        let Ok(permit) = outstanding.clone().try_acquire_owned() else {
            if let Ok(mut s) = stats.lock() {
                s.dropped += 1;
            }
            continue;
        };
        let targets = pick(&mix, &turn).clone();
        let (pool, stats) = (pool.clone(), stats.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let mut worker = pool
                .lock()
                .ok()
                .and_then(|mut p| p.pop())
                .unwrap_or_else(|| Worker::new(width));
            let sent = tokio::time::Instant::now();
            let (outcome, bytes) = worker.iterate(&targets).await;
            let service = sent.elapsed().as_micros().max(1) as u64;
            let waited = due.elapsed();
            let latency = waited.as_micros().max(1) as u64;
            if let Ok(mut s) = stats.lock() {
                if waited > STALL_LATENCY {
                    let window = (due - started).as_millis() / STALL_WINDOW.as_millis();
                    s.stalled.insert(window as u64);
                }
                s.record(outcome, latency, service, bytes);
            }
            if let Ok(mut p) = pool.lock() {
                p.push(worker);
            }
        });
        // Reap finished tasks so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let mut result = stats
        .lock()
        .map(|s| s.clone())
        .unwrap_or_else(|_| Stats::new());
    result.elapsed = started.elapsed();
    result.late = latest;
    result
}

/// One request outside of a measurement (tokens, control API), with up to
/// 5 s for the answer.
pub async fn fetch(target: &Target) -> Result<(u16, Bytes), String> {
    let work = async {
        let mut conn = connect(target.addr).await?;
        let response = conn
            .send_request(target.request()?)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .map_err(|_| format!("{} {}: no answer within 5 s", target.method, target.path))?
}
