//! The limiter on paused time: every latency and wait is exact, and no
//! test depends on the machine's speed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::*;

fn adaptive(initial: usize, min: usize, max: usize) -> LimiterConfig {
    LimiterConfig::adaptive(GradientConfig::new(initial, min, max))
}

/// What the simulated work takes, and whether the CPU is saturated,
/// changed by the test as it runs.
#[derive(Default)]
struct World {
    latency_us: AtomicU64,
    saturated: AtomicBool,
    admitted: AtomicU64,
    refused: AtomicU64,
}

/// `clients` loops, each asking for a place (waiting at most 1 ms),
/// holding it for the world's latency, and after a refusal trying again
/// 1 ms later.
fn clients(limiter: &Arc<Limiter>, world: &Arc<World>, clients: usize) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let (limiter, world) = (limiter.clone(), world.clone());
        set.spawn(async move {
            let class = limiter.default_class();
            loop {
                match limiter.acquire(class, Duration::from_millis(1)).await {
                    Ok(permit) => {
                        world.admitted.fetch_add(1, Ordering::Relaxed);
                        let latency = world.latency_us.load(Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_micros(latency)).await;
                        drop(permit);
                    }
                    Err(_) => {
                        world.refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        });
    }
    set
}

fn limiter_in(world: &Arc<World>, config: LimiterConfig) -> Arc<Limiter> {
    let probe = world.clone();
    Limiter::new(
        config,
        Saturation::custom(move |_| probe.saturated.load(Ordering::Relaxed)),
        Gauges::none(),
    )
}

#[tokio::test(start_paused = true)]
async fn the_limit_converges_up_on_flat_latency_falls_when_it_doubles_and_recovers() {
    let world = Arc::new(World::default());
    world.latency_us.store(10_000, Ordering::Relaxed);
    let limiter = limiter_in(&world, adaptive(4, 2, 1000));
    let _clients = clients(&limiter, &world, 64);

    // Flat latency: from 4 up past the 64 clients, every one in flight.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let up = limiter.snapshot();
    assert!(up.limit >= 64, "converged up: {up:?}");
    assert_eq!(up.in_flight, 64, "every client admitted: {up:?}");
    world.refused.store(0, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        world.refused.load(Ordering::Relaxed),
        0,
        "nobody refused at the converged limit"
    );

    // The latency doubles and the CPU is full (the latency is a queue):
    // the limit falls to where the latency would be back within the
    // tolerance, at most halving per window.
    world.latency_us.store(20_000, Ordering::Relaxed);
    world.saturated.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down = limiter.snapshot();
    assert!(
        down.limit * 2 < up.limit,
        "fell from {} to {}",
        up.limit,
        down.limit
    );
    assert!(down.in_flight <= down.limit, "{down:?}");

    // The latency back at its baseline, the CPU with room: back up.
    world.latency_us.store(10_000, Ordering::Relaxed);
    world.saturated.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = limiter.snapshot();
    assert!(again.limit >= 64, "recovered: {again:?}");
    assert_eq!(again.in_flight, 64, "{again:?}");
}

#[tokio::test(start_paused = true)]
async fn a_slower_upstream_without_overload_becomes_the_baseline() {
    let world = Arc::new(World::default());
    world.latency_us.store(10_000, Ordering::Relaxed);
    let limiter = limiter_in(&world, adaptive(4, 2, 1000));
    let _clients = clients(&limiter, &world, 32);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Three times slower for good, the CPU idle: after a dip, every client
    // is admitted again.
    world.latency_us.store(30_000, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = limiter.snapshot();
    assert!(after.limit >= 32, "{after:?}");
    world.refused.store(0, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(world.refused.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_comes_within_the_wait_or_at_once_when_the_queue_is_full() {
    let limiter = Limiter::new(LimiterConfig::fixed(1), Saturation::never(), Gauges::none());
    let class = limiter.default_class();
    let held = limiter.acquire(class, Duration::ZERO).await.expect("free");

    let started = Instant::now();
    let waited = limiter.acquire(class, Duration::from_millis(2)).await;
    assert_eq!(
        waited.err(),
        Some(Refused::Waited(Duration::from_millis(2)))
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(2),
        "exactly the wait"
    );
    assert_eq!(limiter.snapshot().queued, 0, "the waiter is gone");

    // One waiting already fills a queue as long as the limit: the next is
    // refused without waiting.
    let first = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.acquire(class, Duration::from_millis(50)).await }
    });
    tokio::task::yield_now().await;
    assert_eq!(limiter.snapshot().queued, 1);
    let started = Instant::now();
    let at_once = limiter.acquire(class, Duration::from_millis(50)).await;
    assert_eq!(at_once.err(), Some(Refused::Full));
    assert_eq!(started.elapsed(), Duration::ZERO);

    // The place held goes to the waiter when it is given back.
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(held);
    let permit = first.await.expect("task").expect("handed the place");
    assert_eq!(limiter.snapshot().in_flight, 1);
    drop(permit);
    assert_eq!(limiter.snapshot().in_flight, 0);
}

/// A queue that stood: in a window where most waiters were refused, the
/// next window refuses at once; once waiters get places again, they wait.
#[tokio::test(start_paused = true)]
async fn after_a_window_of_waiting_in_vain_nobody_waits_for_a_window() {
    let config = LimiterConfig {
        min_samples: 1,
        ..LimiterConfig::fixed(1)
    };
    let limiter = Limiter::new(config, Saturation::never(), Gauges::none());
    let class = limiter.default_class();
    let wait = Duration::from_millis(2);
    let held = limiter.acquire(class, wait).await.expect("free");
    for _ in 0..3 {
        assert_eq!(
            limiter.acquire(class, wait).await.err(),
            Some(Refused::Waited(wait))
        );
    }
    // The window ends as the place comes back: three of three in vain.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(held);
    let held = limiter.acquire(class, wait).await.expect("free");
    let started = Instant::now();
    assert_eq!(
        limiter.acquire(class, wait).await.err(),
        Some(Refused::Full)
    );
    assert_eq!(started.elapsed(), Duration::ZERO, "refused at once");
    // A window in which nobody waited in vain: waiting again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(held);
    let _held = limiter.acquire(class, wait).await.expect("free");
    let started = Instant::now();
    assert_eq!(
        limiter.acquire(class, wait).await.err(),
        Some(Refused::Waited(wait))
    );
    assert_eq!(started.elapsed(), wait);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_one_class_leaves_the_share_kept_for_another() {
    let limiter = Limiter::new(
        LimiterConfig::fixed(10),
        Saturation::never(),
        Gauges::none(),
    );
    let batch = limiter.class("batch", 0, metrics::Gauge::noop());
    let interactive = limiter.class("interactive", 30, metrics::Gauge::noop());

    // A burst of batch work takes what is not kept for interactive work.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        match limiter.try_acquire(batch) {
            Ok(p) => held.push(p),
            Err(_) => refused += 1,
        }
    }
    assert_eq!((held.len(), refused), (7, 13));
    // Interactive work still finds its three places at once.
    for _ in 0..3 {
        held.push(limiter.try_acquire(interactive).expect("its share"));
    }
    assert_eq!(limiter.try_acquire(interactive).err(), Some(Refused::Full));
    let snapshot = limiter.snapshot();
    assert_eq!(snapshot.in_flight, 10);
    assert_eq!(
        snapshot.classes,
        vec![("default", 0), ("batch", 7), ("interactive", 3)]
    );

    // Alone, a class may use every place, kept ones included.
    drop(held);
    let alone: Vec<_> = (0..10)
        .map_while(|_| limiter.try_acquire(interactive).ok())
        .collect();
    assert_eq!(alone.len(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_freed_place_goes_to_the_class_furthest_below_its_share() {
    let limiter = Limiter::new(LimiterConfig::fixed(4), Saturation::never(), Gauges::none());
    let batch = limiter.class("batch", 0, metrics::Gauge::noop());
    let interactive = limiter.class("interactive", 50, metrics::Gauge::noop());
    // Interactive has used its share and batch the rest.
    let mut held: Vec<_> = (0..2)
        .map(|_| limiter.try_acquire(batch).expect("free"))
        .collect();
    held.extend((0..2).map(|_| limiter.try_acquire(interactive).expect("free")));
    let wait = Duration::from_millis(20);
    let spawn = |class| {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire(class, wait).await.map(|p| p.class()) })
    };
    // Batch asks first, interactive after; both wait.
    let b = spawn(batch);
    tokio::task::yield_now().await;
    let i = spawn(interactive);
    tokio::task::yield_now().await;
    assert_eq!(limiter.snapshot().queued, 2);
    // An interactive place comes back: interactive is now below its share,
    // so the place goes to it although batch asked first.
    held.pop();
    assert_eq!(i.await.expect("task"), Ok(interactive));
    // The next place (a batch one) goes to the batch waiter.
    held.remove(0);
    assert_eq!(b.await.expect("task"), Ok(batch));
}
