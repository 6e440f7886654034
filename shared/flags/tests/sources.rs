//! Flags as replicas see them: from a real `redis-server` shared by two
//! replicas (they agree on every subject, a change applies within 2 s
//! without a restart, Redis going away keeps the last values), from a file
//! read again when it changes, and from the environment, each over the
//! one before.

use std::time::{Duration, Instant};

use bff_config::Sources;
use bff_flags::{Flag, Flags, FlagsConfig, SharedStore, Source};

static FLAGS: &[Flag] = &[
    Flag {
        key: "checkout",
        description: "the new checkout, rolled out gradually",
        variants: &["old", "new"],
        default: "old",
    },
    Flag {
        key: "layout",
        description: "a layout experiment",
        variants: &["full", "compact"],
        default: "full:90,compact:10",
    },
];
const CHECKOUT: &Flag = &FLAGS[0];
const LAYOUT: &Flag = &FLAGS[1];

fn config(env: &[(&str, &str)]) -> FlagsConfig {
    // The default refresh (1 s): what the 2 s promise is made with.
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    let mut sources = Sources::load(None, env, &[], &[]).expect("sources");
    FlagsConfig::configure(&mut sources, FLAGS).expect("config")
}

fn shared(url: &str) -> SharedStore {
    SharedStore {
        url: url.to_owned(),
        timeout: Duration::from_millis(200),
        namespace: "bff-test".to_owned(),
    }
}

async fn hset(redis: &testkit::RedisServer, field: &str, value: &str) {
    redis
        .command(&["HSET", "bff-test:flags:v1", field, value])
        .await;
}

async fn variants(flags: &Flags, flag: &Flag, n: usize) -> Vec<&'static str> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(flags.variant(flag, &format!("subject-{i}")).await);
    }
    out
}

/// Whether each of `n` subjects gets `variant`.
async fn all_get(flags: &Flags, flag: &Flag, n: usize, variant: &str) -> bool {
    variants(flags, flag, n).await.iter().all(|v| *v == variant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_redis_agree_follow_changes_and_survive_its_loss() {
    let Some(mut redis) = testkit::RedisServer::start().await else {
        return;
    };
    let url = redis.url();
    hset(&redis, "checkout", "old:70,new:30").await;
    let config = config(&[]);
    let a = Flags::start("bff-test", &config, Some(&shared(&url))).expect("a");
    let b = Flags::start("bff-test", &config, Some(&shared(&url))).expect("b");
    a.refresh().await;
    b.refresh().await;

    // Two replicas: the same variant for every one of 10,000 subjects, and
    // the configured share within ±2%.
    let (on_a, on_b) = (
        variants(&a, CHECKOUT, 10_000).await,
        variants(&b, CHECKOUT, 10_000).await,
    );
    assert_eq!(on_a, on_b, "the replicas agree on every subject");
    let new = on_a.iter().filter(|v| **v == "new").count();
    assert!((2_800..=3_200).contains(&new), "30% ± 2%: {new} of 10,000");
    // The declared default splits too.
    let compact = variants(&a, LAYOUT, 10_000)
        .await
        .iter()
        .filter(|v| **v == "compact")
        .count();
    assert!((800..=1_200).contains(&compact), "10% ± 2%: {compact}");

    // A change in Redis applies within 2 s, without a restart (the
    // background refresh, not `refresh()`).
    let before = variants(&a, CHECKOUT, 200).await;
    hset(&redis, "checkout", "new").await;
    let changed = Instant::now();
    loop {
        let (now_a, now_b) = (
            variants(&a, CHECKOUT, 200).await,
            variants(&b, CHECKOUT, 200).await,
        );
        if now_a.iter().chain(&now_b).all(|v| *v == "new") {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(2),
            "not applied within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("applied on both replicas after {:?}", changed.elapsed());
    assert!(before.contains(&"old"), "some subjects did change");
    let listed = a.list();
    assert_eq!(listed[0].source, Source::Redis);
    assert_eq!(listed[0].split[1].percent, 100.0);

    // A value that does not parse is refused; the last one stays.
    hset(&redis, "checkout", "gold").await;
    a.refresh().await;
    assert!(all_get(&a, CHECKOUT, 100, "new").await);

    // Redis goes away: the last values read stay, nothing fails.
    redis.stop().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    a.refresh().await;
    assert!(all_get(&a, CHECKOUT, 100, "new").await);
    let state = a.shared().expect("shared");
    assert!(state.error.is_some(), "the failure is shown: {state:?}");
    assert_eq!(a.list()[0].source, Source::Redis);

    // A replica started while Redis is down runs on its other sources.
    let c = Flags::start("bff-test", &config, Some(&shared(&url))).expect("c");
    c.refresh().await;
    assert!(all_get(&c, CHECKOUT, 100, "old").await);

    // Redis is back: the replicas read it again.
    redis.restart().await;
    hset(&redis, "checkout", "old:50,new:50").await;
    let back = Instant::now();
    while c.list()[0].source != Source::Redis {
        assert!(back.elapsed() < Duration::from_secs(5), "Redis read again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(c.shared().expect("shared").error.is_none());
}

#[tokio::test]
async fn the_environment_wins_over_the_file_which_is_read_again_when_it_changes() {
    let dir = std::env::temp_dir().join(format!("bff-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("flags.json");
    std::fs::write(&file, r#"{"checkout": "new", "layout": "compact"}"#).expect("write");
    let path = file.display().to_string();
    let config = config(&[("BFF_FLAGS_FILE", &path), ("BFF_FLAG_LAYOUT", "full")]);
    let flags = Flags::start("bff-test", &config, None).expect("flags");
    assert!(all_get(&flags, CHECKOUT, 50, "new").await, "the file");
    assert!(all_get(&flags, LAYOUT, 50, "full").await, "the environment");
    let listed = flags.list();
    assert_eq!(
        (listed[0].source, listed[1].source),
        (Source::File, Source::Env)
    );

    // The file changes: read again (mtime resolution may be coarse, so
    // the size changes too).
    std::fs::write(&file, r#"{"checkout": "old:100,new:0"}"#).expect("write");
    flags.refresh().await;
    assert!(all_get(&flags, CHECKOUT, 50, "old").await);
    // A broken file is refused and the last splits stay.
    std::fs::write(&file, r#"{"checkout": "gold", "typo": "x"}"#).expect("write");
    flags.refresh().await;
    assert!(all_get(&flags, CHECKOUT, 50, "old").await);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_splits_and_files_name_their_key() {
    let load = |env: &[(&str, &str)]| {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let mut sources = Sources::load(None, env, &[], &[]).expect("sources");
        FlagsConfig::configure(&mut sources, FLAGS).map(|_| ())
    };
    let error = load(&[("BFF_FLAG_CHECKOUT", "newest")]).expect_err("bad variant");
    assert_eq!(error.key, "BFF_FLAG_CHECKOUT");
    assert!(error.message.contains("old, new"), "{}", error.message);
    let error = load(&[("BFF_FLAGS_FILE", "/no/such/flags.json")]).expect_err("no file");
    assert_eq!(error.key, "BFF_FLAGS_FILE");
    let error = load(&[("BFF_FLAGS_REFRESH", "1ms")]).expect_err("too often");
    assert_eq!(error.key, "BFF_FLAGS_REFRESH");
    static BAD: &[Flag] = &[Flag {
        key: "typo",
        description: "",
        variants: &["a", "b"],
        default: "c",
    }];
    let mut sources = Sources::load(None, std::iter::empty(), &[], &[]).expect("sources");
    let error = FlagsConfig::configure(&mut sources, BAD).expect_err("bad default");
    assert_eq!(error.key, "BFF_FLAG_TYPO");
    assert!(
        error.message.contains("declared default"),
        "{}",
        error.message
    );
}
