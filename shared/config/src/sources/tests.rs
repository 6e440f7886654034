use std::time::Duration;

use super::*;
use crate::de;

#[derive(Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Pool {
    #[serde(deserialize_with = "de::duration")]
    timeout: Duration,
    #[serde(deserialize_with = "de::positive")]
    max_size: u32,
    #[serde(deserialize_with = "de::flag")]
    shared: bool,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            timeout: Duration::from_secs(1),
            max_size: 10,
            shared: true,
        }
    }
}

impl Section for Pool {
    fn check(&self) -> Result<(), FieldError> {
        if self.shared && self.max_size > 100 {
            return Err(FieldError::new("max_size", "at most 100 when shared"));
        }
        Ok(())
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn sources(pairs: &[(&str, &str)]) -> Sources {
    Sources::load(None, env(pairs), &["REDIS_URL"], &["OTEL_SERVICE_NAME"]).expect("loads")
}

#[test]
fn a_section_takes_its_keys_and_defaults_the_rest() {
    let mut s = sources(&[("BFF_POOL_TIMEOUT", "250ms"), ("BFF_POOL_SHARED", " ")]);
    let pool: Pool = s.section("POOL").expect("valid");
    assert_eq!(
        pool,
        Pool {
            timeout: Duration::from_millis(250),
            ..Pool::default()
        },
        "a blank value is no value"
    );
    assert_eq!(s.finish().expect("all read"), Vec::<String>::new());
}

#[test]
fn later_layers_win_key_by_key() {
    let mut s = sources(&[
        ("BFF_POOL_ALL_MAX_SIZE", "20"),
        ("BFF_POOL_ALL_SHARED", "off"),
        ("BFF_POOL_A_MAX_SIZE", "30"),
    ]);
    let a: Pool = s.layered(&["POOL_ALL", "POOL_A"]).expect("valid");
    let b: Pool = s.layered(&["POOL_ALL", "POOL_B"]).expect("valid");
    assert_eq!((a.max_size, a.shared), (30, false));
    assert_eq!((b.max_size, b.shared), (20, false));
}

#[test]
fn a_bad_value_is_named_by_its_key_with_what_was_given() {
    let mut s = sources(&[("BFF_POOL_TIMEOUT", "soon")]);
    let err = s.section::<Pool>("POOL").expect_err("invalid");
    assert_eq!(err.key, "BFF_POOL_TIMEOUT");
    assert_eq!(
        err.message,
        "expected a duration such as 500ms, 2s or 1m (got \"soon\")"
    );
    let mut s = sources(&[("BFF_POOL_ALL_MAX_SIZE", "0"), ("BFF_POOL_A_TIMEOUT", "1s")]);
    let err = s
        .layered::<Pool>(&["POOL_ALL", "POOL_A"])
        .expect_err("invalid");
    assert_eq!(err.key, "BFF_POOL_ALL_MAX_SIZE", "the layer that gave it");
    let mut s = sources(&[("BFF_POOL_A_MAX_SIZE", "500")]);
    let err = s
        .layered::<Pool>(&["POOL_ALL", "POOL_A"])
        .expect_err("a rule across fields");
    assert_eq!(
        (err.key.as_str(), err.message.as_str()),
        ("BFF_POOL_A_MAX_SIZE", "at most 100 when shared")
    );
}

#[test]
fn unread_keys_are_errors_in_the_file_and_warnings_in_the_environment() {
    let dir = std::env::temp_dir().join(format!("bff-config-sources-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("c.toml");
    std::fs::write(
        &file,
        "redis_url = \"redis://r\"\n[pool]\ntimeout = \"2s\"\nmax-size = 5\n",
    )
    .expect("write");
    let mut s = Sources::load(
        Some(&file),
        env(&[
            ("BFF_POOL_MAX_SIZE", "7"),
            ("BFF_OTHER", "x"),
            ("HOME", "/root"),
            ("OTEL_SERVICE_NAME", "svc"),
        ]),
        &["REDIS_URL"],
        &["OTEL_SERVICE_NAME"],
    )
    .expect("loads");
    let pool: Pool = s.section("POOL").expect("valid");
    assert_eq!(
        (pool.timeout, pool.max_size),
        (Duration::from_secs(2), 7),
        "the file's nested keys, the environment winning"
    );
    assert_eq!(s.take("REDIS_URL").as_deref(), Some("redis://r"));
    assert_eq!(
        s.finish().expect("only the environment is left"),
        [
            "unknown variable BFF_OTHER ignored",
            "unknown variable OTEL_SERVICE_NAME ignored"
        ]
    );

    std::fs::write(&file, "[pool]\ntimeuot = \"2s\"\n").expect("write");
    let mut s = Sources::load(Some(&file), env(&[]), &[], &[]).expect("loads");
    let _: Pool = s.section("POOL").expect("defaults");
    let err = s.finish().expect_err("a typo in the file");
    assert_eq!(err.key, "BFF_POOL_TIMEUOT");

    std::fs::write(&file, "[pool\n").expect("write");
    let err = Sources::load(Some(&file), env(&[]), &[], &[]).expect_err("not TOML");
    assert_eq!(err.key, "--config");
    std::fs::write(&file, "pool = [1, 2]\n").expect("write");
    let err = Sources::load(Some(&file), env(&[]), &[], &[]).expect_err("an array");
    assert_eq!(err.key, "pool");
    let _ = std::fs::remove_dir_all(dir);
}
