//! Scenario 9: live streams on bff-web.
//!
//! Two questions a team asks before putting live updates in front of its
//! users: what an idle open stream costs (memory per stream, CPU while
//! nothing happens, 10,000 of them on one replica), and how long a change
//! takes to reach everybody watching (from the control API's `PUT` to each
//! of 1,000 clients reading the `stock` event).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::bench::*;

/// Opens an SSE stream and reads until its first event (the snapshot).
async fn open_stream(path: &str, token: &str) -> Result<TcpStream, String> {
    let mut socket = TcpStream::connect(addr(LIVE_WEB_PORT))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: bff\r\naccept: text/event-stream\r\nauthorization: Bearer {token}\r\n\r\n"
    );
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !contains(&seen, b"event: snapshot") {
        let n = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buf))
            .await
            .map_err(|_| "no snapshot within 30 s".to_owned())?
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "closed before the snapshot: {}",
                String::from_utf8_lossy(&seen)
            ));
        }
        seen.extend_from_slice(&buf[..n]);
    }
    if !seen.starts_with(b"HTTP/1.1 200") {
        return Err(format!("refused: {}", String::from_utf8_lossy(&seen)));
    }
    Ok(socket)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Opens a keep-alive connection, makes one `GET /healthz` on it and
/// keeps it idle: what a connection costs the server without a stream.
async fn open_idle_connection() -> Result<TcpStream, String> {
    let mut socket = TcpStream::connect(addr(LIVE_WEB_PORT))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: bff\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !contains(&seen, b"\r\n\r\n") {
        let n = socket
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed".into());
        }
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(socket)
}

/// RSS growth (KiB) of a fresh bff-web for `n` idle keep-alive connections.
async fn connection_cost(
    bin: &std::path::Path,
    plan: &Plan,
    env: &[(String, String)],
    n: usize,
) -> Result<f64, String> {
    let web = Proc::spawn(
        "bff-web (connections)",
        &bin.join("bff-web"),
        &[],
        env,
        plan.bff_cpu,
    )?;
    wait_http(LIVE_WEB_PORT, "/readyz", "bff-web").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = web.rss_kib()?;
    let mut held = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(200) {
        let batch: Vec<_> = (chunk * 200..((chunk + 1) * 200).min(n))
            .map(|_| tokio::spawn(open_idle_connection()))
            .collect();
        for task in batch {
            held.push(task.await.map_err(|e| e.to_string())??);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = web.rss_kib()?;
    drop(held);
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

/// Opens `n` streams spread over `paths`, `parallel` at a time.
async fn open_many(
    n: usize,
    paths: &[String],
    token: &str,
    parallel: usize,
) -> Result<Vec<TcpStream>, String> {
    let mut streams = Vec::with_capacity(n);
    let mut next = 0;
    while next < n {
        let batch: Vec<_> = (next..(next + parallel).min(n))
            .map(|i| {
                let (path, token) = (paths[i % paths.len()].clone(), token.to_owned());
                tokio::spawn(async move { open_stream(&path, &token).await })
            })
            .collect();
        next += batch.len();
        for task in batch {
            streams.push(task.await.map_err(|e| e.to_string())??);
        }
    }
    Ok(streams)
}

/// Reads one stream, reporting when each `stock` event's `available`
/// arrives.
async fn watch(mut socket: TcpStream, seen: mpsc::UnboundedSender<(i64, Instant)>) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = Instant::now();
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = pending.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&block);
            if !block.contains("event: stock") {
                continue;
            }
            let available = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .and_then(|v| v["available"].as_i64());
            if let Some(available) = available
                && seen.send((available, now)).is_err()
            {
                return;
            }
        }
    }
}

/// Runs scenario 9; returns its notes.
pub(crate) async fn live(
    bin: &std::path::Path,
    plan: &Plan,
    token: &str,
    product_ids: &[String],
    idle_streams: usize,
    fan_out: usize,
    rows: &mut Vec<Row>,
) -> Result<Vec<String>, String> {
    let mut env = bff_env(LIVE_WEB_PORT);
    let ceiling = (idle_streams.max(fan_out) + 100).to_string();
    env.push(("BFF_LIVE_MAX_STREAMS".into(), ceiling.clone()));
    env.push(("BFF_LIVE_MAX_PER_SUBJECT".into(), ceiling));
    let per_connection = connection_cost(bin, plan, &env, idle_streams).await?;
    let web = Proc::spawn(
        "bff-web (live)",
        &bin.join("bff-web"),
        &[],
        &env,
        plan.bff_cpu,
    )?;
    wait_http(LIVE_WEB_PORT, "/readyz", "bff-web").await?;
    let paths: Vec<String> = product_ids
        .iter()
        .map(|id| format!("/v1/products/{id}/live"))
        .collect();
    let mut notes = Vec::new();

    // Warm up every path once (first streams, upstream channels, caches).
    drop(open_many(paths.len(), &paths, token, 50).await?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = web.rss_kib()?;
    let started = Instant::now();
    let idle = open_many(idle_streams, &paths, token, 200).await?;
    let opened_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_before = web.cpu_time()?;
    let quiet = Duration::from_secs(5);
    tokio::time::sleep(quiet).await;
    let idle_cpu = (web.cpu_time()? - cpu_before).as_secs_f64() / quiet.as_secs_f64();
    let after = web.rss_kib()?;
    let per_stream = (after.saturating_sub(before)) as f64 / idle_streams as f64;
    rows.push(Row {
        scenario: "9 live streams".into(),
        target: "bff-web SSE".into(),
        mode: format!("{idle_streams} idle streams"),
        rps: idle_streams as f64 / opened_in.as_secs_f64(),
        p50_ms: 0.0,
        p99_ms: 0.0,
        cpu_us_per_req: None,
        upstream_calls_per_req: None,
        errors: 0,
        note: format!(
            "RSS {:.1} → {:.1} MiB: {per_stream:.1} KiB per stream (an idle keep-alive connection alone: {per_connection:.1} KiB); {:.1}% of a CPU while idle; req/s = streams opened per second",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            idle_cpu * 100.0
        ),
    });
    notes.push(format!(
        "Scenario 9: {idle_streams} idle SSE streams over {} products cost {per_stream:.1} KiB of RSS each ({:.1} MiB in all; {per_connection:.1} KiB of it is what an idle keep-alive connection costs without a stream) and {:.1}% of a CPU",
        paths.len(),
        (after.saturating_sub(before)) as f64 / 1024.0,
        idle_cpu * 100.0
    ));
    drop(idle);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Fan-out: `fan_out` readers of one product, 20 changes.
    let product = &product_ids[0];
    let readers = open_many(fan_out, &paths[..1], token, 200).await?;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    for socket in readers {
        tokio::spawn(watch(socket, seen_tx.clone()));
    }
    drop(seen_tx);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let mut missing = 0u64;
    let changes = 20;
    let cpu_before = web.cpu_time()?;
    for round in 0..changes {
        let value = 500_000 + round;
        let sent = Instant::now();
        control(
            Method::PUT,
            &format!("/stock/{product}"),
            &format!(r#"{{"available": {value}}}"#),
        )
        .await?;
        let mut got = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while got < fan_out {
            match tokio::time::timeout_at(deadline, seen.recv()).await {
                Ok(Some((v, at))) if v == value => {
                    got += 1;
                    let micros = at.saturating_duration_since(sent).as_micros();
                    let _ = histogram.record(u64::try_from(micros).unwrap_or(u64::MAX).max(1));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        missing += (fan_out - got) as u64;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = histogram.len().max(1);
    let cpu_per_event = (web.cpu_time()? - cpu_before).as_secs_f64() * 1e6 / delivered as f64;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    rows.push(Row {
        scenario: "9 live streams".into(),
        target: "bff-web SSE".into(),
        mode: format!("{changes} changes × {fan_out} clients"),
        rps: 0.0,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        cpu_us_per_req: Some(cpu_per_event),
        upstream_calls_per_req: None,
        errors: missing,
        note: format!(
            "control API PUT → stock event read by each client; max {:.2} ms; CPU per delivered event",
            ms(1.0)
        ),
    });
    notes.push(format!(
        "Scenario 9: a stock change reaches {fan_out} clients of one product in p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({missing} not delivered), {cpu_per_event:.1} µs of BFF CPU per delivered event",
        ms(0.5),
        ms(0.99),
        ms(1.0)
    ));
    Ok(notes)
}

/// Runs the scenario, adding its rows and notes to the bench.
pub(super) async fn run(b: &mut Bench<'_>) -> Result<(), String> {
    let Bench {
        args,
        bin,
        plan,
        web_token,
        product_ids,
        rows,
        notes,
        ..
    } = b;
    notes.extend(
        live(
            bin,
            plan,
            web_token,
            product_ids,
            args.live_streams,
            args.fan_out,
            rows,
        )
        .await?,
    );
    Ok(())
}
