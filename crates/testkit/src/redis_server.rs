//! A throw-away `redis-server` per test.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A `redis-server` child process on a free port, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Child,
}

impl RedisServer {
    /// Starts a server, or returns `None` (after printing why) when the
    /// `redis-server` binary is not installed.
    ///
    /// # Panics
    /// When `REQUIRE_REDIS=1` and the binary is missing (CI must not skip
    /// these tests silently), or when an installed server fails to start.
    pub async fn start() -> Option<Self> {
        let binary =
            std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        let required = std::env::var("REQUIRE_REDIS").is_ok_and(|v| v == "1");
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = match free_port() {
                Ok(port) => port,
                Err(e) => panic!("no free port for redis-server: {e}"),
            };
            let spawned = spawn(&binary, port);
            let child = match spawned {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if required {
                        panic!("REQUIRE_REDIS=1 but `{binary}` is not installed");
                    }
                    eprintln!(
                        "skipping: `{binary}` is not installed (set REQUIRE_REDIS=1 to make this fail)"
                    );
                    return None;
                }
                Err(e) => panic!("could not run `{binary}`: {e}"),
            };
            let mut server = RedisServer { port, child };
            match server.wait_ready().await {
                Ok(()) => return Some(server),
                // Most likely the port was taken between probing and binding.
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not become ready: {last_error}");
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command on the server, as an operator would with
    /// `redis-cli` (`["HSET", "bff-partner:flags:v1", "flag", "v2"]`).
    ///
    /// # Panics
    /// When the server refuses it.
    pub async fn command(&self, args: &[&str]) {
        let client = redis::Client::open(self.url()).expect("redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("a connection to redis-server");
        let mut cmd = redis::cmd(args.first().copied().unwrap_or("PING"));
        for arg in args.iter().skip(1) {
            cmd.arg(*arg);
        }
        let _: redis::Value = cmd
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"));
    }

    /// Kills the server (as a crash would), keeping its port for
    /// [`restart`](Self::restart).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }

    /// Starts a fresh, empty server on the same port.
    ///
    /// # Panics
    /// When it does not start.
    pub async fn restart(&mut self) {
        self.stop().await;
        let binary =
            std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        self.child = match spawn(&binary, self.port) {
            Ok(child) => child,
            Err(e) => panic!("could not restart `{binary}`: {e}"),
        };
        if let Err(e) = self.wait_ready().await {
            panic!("redis-server did not come back: {e}");
        }
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("redis-server exited with {status}"));
            }
            if ping(self.port).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("no PONG within 2 seconds".to_owned())
    }
}

fn spawn(binary: &str, port: u16) -> std::io::Result<Child> {
    Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

async fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    matches!(tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut buf)).await, Ok(Ok(_)) if &buf == b"+PONG\r\n")
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
