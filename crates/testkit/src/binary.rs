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
            let url = match service {
                ServiceName::Pricing => format!("{}/graphql", stack.url(*service)),
                _ => stack.url(*service),
            };
            command.env(
                format!("BFF_UPSTREAM_{}", service.as_str().to_uppercase()),
                url,
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
