//! A BFF binary run as a process: SIGTERM drains it.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use demo_services::{DemoStack, Fault, ServiceName};

/// A BFF binary running as a child process against a demo stack.
#[derive(Debug)]
pub struct BffProcess {
    child: Child,
    port: u16,
    bin: String,
    /// Reads stdout as it comes (a full pipe would block the process).
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl BffProcess {
    /// Starts the BFF binary at `bin` against `stack` (its declared
    /// `upstreams`), with `env` added, and waits until it is ready. Its
    /// stdout (the JSON log) is kept for [`stop`](Self::stop).
    ///
    /// # Panics
    /// When it does not start or become ready within 20 s.
    pub async fn start(
        bin: &str,
        stack: &DemoStack,
        upstreams: &[ServiceName],
        env: &[(&str, &str)],
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let identity = stack.url(ServiceName::Identity);
        let mut command = Command::new(bin);
        command
            .env_clear()
            .env("BFF_LOG_FORMAT", "json")
            .env("BFF_LISTEN", format!("127.0.0.1:{port}"))
            .env("BFF_JWKS_URL", format!("{identity}/.well-known/jwks.json"))
            .env("BFF_ISSUER", &identity)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for service in upstreams {
            // (The pricing service's URL is its GraphQL endpoint already.)
            command.env(
                format!("BFF_UPSTREAM_{}", service.as_str().to_uppercase()),
                stack.url(*service),
            );
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the binary runs");
        let mut out = child.stdout.take().expect("stdout is piped");
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        let process = BffProcess {
            child,
            port,
            bin: bin.to_owned(),
            stdout: Some(stdout),
        };
        let client = reqwest::Client::new();
        let ready = process.url("/readyz");
        let deadline = Instant::now() + Duration::from_secs(20);
        while client
            .get(&ready)
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "{bin} did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends SIGTERM.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn terminate(&self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
    }

    /// Sends SIGTERM, waits for the exit (15 s at most) and returns the exit
    /// code and everything the process wrote to stdout.
    ///
    /// # Panics
    /// When it does not exit in time.
    pub async fn stop(mut self) -> (Option<i32>, String) {
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit after SIGTERM",
                self.bin
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let out = self
            .stdout
            .take()
            .map(|reader| reader.join().unwrap_or_default())
            .unwrap_or_default();
        (status.code(), out)
    }
}

impl Drop for BffProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts the BFF binary at `bin` against `stack` (its declared
/// `upstreams`), waits until it is ready, starts a request to `path` with
/// `token` that `slow` (300 ms of latency) keeps in flight, sends SIGTERM,
/// and checks that the request still completes with 200 and the process
/// exits 0.
///
/// # Panics
/// When any of that does not hold.
pub async fn check_sigterm_drains(
    bin: &str,
    stack: &DemoStack,
    upstreams: &[ServiceName],
    slow: ServiceName,
    path: &str,
    token: &str,
) {
    let process = BffProcess::start(bin, stack, upstreams, &[]).await;
    let client = reqwest::Client::new();
    stack.faults().set(
        slow,
        Fault {
            latency_ms: 300,
            ..Default::default()
        },
    );
    let in_flight = tokio::spawn({
        let (client, url, token) = (client.clone(), process.url(path), token.to_owned());
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = tokio::spawn(process.stop());
    assert_eq!(
        in_flight.await.expect("task").expect("a response"),
        200,
        "the request in flight at SIGTERM finished"
    );
    let _ = stack.faults().clear(slow);
    let (code, _) = stopped.await.expect("task");
    assert_eq!(code, Some(0), "{bin} exits 0 after draining");
}

/// Starts the BFF binary at `bin` (of `spec`) against `stack` and, before
/// any request, checks that `/metrics` already has the fragment cache's
/// series at zero for every kind `spec` declares: lookups by result and
/// tier, stale serves, loads, evictions and undecodable entries, so that
/// dashboards and alerts read 0, not "no data".
///
/// # Panics
/// When a series is missing or not zero.
pub async fn check_cache_series_at_start(bin: &str, stack: &DemoStack, spec: bff_edge::BffSpec) {
    let process = BffProcess::start(bin, stack, &crate::upstreams_of(spec), &[]).await;
    let metrics = reqwest::get(process.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !spec.fragments.is_empty(),
        "{} declares its fragments",
        spec.name
    );
    for policy in spec.fragments {
        let kind = policy.kind;
        for series in [
            format!(r#"bff_cache_fragments_total{{kind="{kind}",result="hit",tier="local"}}"#),
            format!(r#"bff_cache_fragments_total{{kind="{kind}",result="hit",tier="shared"}}"#),
            format!(r#"bff_cache_fragments_total{{kind="{kind}",result="stale",tier="local"}}"#),
            format!(r#"bff_cache_fragments_total{{kind="{kind}",result="miss",tier="none"}}"#),
            format!(r#"bff_cache_stale_served_total{{kind="{kind}",reason="upstream_error"}}"#),
            format!(r#"bff_cache_stale_served_total{{kind="{kind}",reason="revalidating"}}"#),
            format!(r#"bff_cache_loads_total{{kind="{kind}",trigger="miss",source="upstream"}}"#),
            format!(r#"bff_cache_evictions_total{{kind="{kind}",cause="size"}}"#),
            format!(r#"bff_cache_undecodable_total{{kind="{kind}"}}"#),
        ] {
            let line = format!("{series} 0");
            assert!(
                metrics.lines().any(|l| l == line),
                "{}: {line} in /metrics before the first request",
                spec.name
            );
        }
    }
    drop(process);
}
