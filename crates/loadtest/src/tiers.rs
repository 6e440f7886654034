//! Scenario 5's second half: how long a fragment hit takes in each tier of
//! the fragment cache, measured on the store itself (no HTTP around it) so
//! the two figures differ only by the tier. Needs `redis-server` on the
//! `PATH`; without it the figures are reported as not measured.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bff_cache::tiered::{FragmentPolicy, Tier, TieredCache, TieredConfig};
use demo_services::DemoData;
use hdrhistogram::Histogram;

/// Hit latencies, in microseconds.
#[derive(Debug)]
pub struct TierLatency {
    /// Fragments read per tier.
    pub reads: usize,
    /// Local tier (moka): p50, p99.
    pub local_us: (f64, f64),
    /// Shared tier (Redis on localhost, then filling the local tier): p50, p99.
    pub shared_us: (f64, f64),
}

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const POLICY: FragmentPolicy = FragmentPolicy {
    kind: "user",
    shape: 1,
    fresh_for: Duration::from_secs(60),
    revalidate_for: Duration::ZERO,
    stale_for: Duration::from_secs(600),
    approx_bytes: 4096,
    per_user: true,
};

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn percentiles(h: &Histogram<u64>) -> (f64, f64) {
    (
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
    )
}

/// Writes `reads` user profiles through one replica, reads each through a
/// second replica (a shared-tier hit that fills its local tier), then reads
/// each again there (a local-tier hit). `None` without `redis-server`.
pub async fn hit_latency(data: &DemoData, reads: usize) -> Result<Option<TierLatency>, String> {
    let port = free_port()?;
    let _redis = match Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => Redis(child),
        Err(_) => return Ok(None),
    };
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(5) {
            return Err("redis-server did not start within 5 s".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replica = || {
        TieredCache::new(TieredConfig {
            redis_url: Some(format!("redis://127.0.0.1:{port}")),
            namespace: "loadtest".to_owned(),
            // Generous: this measures latency, not the timeout.
            redis_timeout: Duration::from_secs(1),
            ..TieredConfig::default()
        })
        .map_err(|e| e.to_string())
    };
    let (writer, reader) = (replica()?, replica()?);
    let users = data.users();
    let keys: Vec<String> = (0..reads).map(|i| format!("user:{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let profile = serde_json::to_value(&users[i % users.len()]).map_err(|e| e.to_string())?;
        writer.put(&POLICY, key, &[], Arc::new(profile)).await;
    }
    // The shared tier is written in the background.
    let started = Instant::now();
    while reader
        .get::<serde_json::Value>(&POLICY, &keys[reads - 1])
        .await
        .is_none()
    {
        if started.elapsed() > Duration::from_secs(5) {
            return Err("fragments did not reach Redis within 5 s".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut shared = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let mut local = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    for (histogram, tier) in [(&mut shared, Tier::Shared), (&mut local, Tier::Local)] {
        for key in &keys[..reads - 1] {
            let started = Instant::now();
            let hit = reader.get::<serde_json::Value>(&POLICY, key).await;
            let nanos = started.elapsed().as_nanos() as u64;
            match hit {
                Some(hit) if hit.tier == tier => {
                    let _ = histogram.record(nanos.max(1));
                }
                other => {
                    return Err(format!(
                        "expected a {tier:?} hit for {key}, got {:?}",
                        other.map(|h| h.tier)
                    ));
                }
            }
        }
    }
    Ok(Some(TierLatency {
        reads: reads - 1,
        local_us: percentiles(&local),
        shared_us: percentiles(&shared),
    }))
}
