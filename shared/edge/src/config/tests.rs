//! The configuration's tests: defaults, precedence, and bad values named
//! by their key.

use super::*;

use bff_upstream::{Protocol, UpstreamPolicy};

const SPEC: BffSpec = BffSpec {
    version: "9.9.9",
    name: "bff-test",
    default_port: 8089,
    upstreams: &[
        UpstreamDecl {
            name: "user",
            protocol: Protocol::Rest,
            default_url: "http://127.0.0.1:7001",
        },
        UpstreamDecl {
            name: "order",
            protocol: Protocol::Rest,
            default_url: "http://127.0.0.1:7002",
        },
        UpstreamDecl {
            name: "pricing",
            protocol: Protocol::GraphQl,
            default_url: "http://127.0.0.1:7005/graphql",
        },
        UpstreamDecl {
            name: "product",
            protocol: Protocol::Grpc,
            default_url: "http://127.0.0.1:7004",
        },
    ],
    fragments: &[FragmentPolicy {
        kind: "price",
        shape: 1,
        fresh_for: Duration::ZERO,
        revalidate_for: Duration::ZERO,
        stale_for: Duration::from_secs(600),
        approx_bytes: 200,
        per_user: false,
    }],
    flags: &[],
};

fn policy(c: &BffConfig, name: &str) -> UpstreamPolicy {
    c.upstream(name).expect("declared").policy
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_follow_the_contract() {
    let c = BffConfig::defaults(SPEC);
    assert_eq!(c.listen.to_string(), "127.0.0.1:8089");
    assert_eq!(c.audience, "bff-test");
    assert_eq!(
        c.upstream("pricing").expect("declared").url.as_str(),
        "http://127.0.0.1:7005/graphql"
    );
    assert!(c.upstream("inventory").is_none(), "not declared");
    assert_eq!(c.fragments[0].fresh_for, Duration::ZERO);
    let c = BffConfig::load(SPEC, None, env(&[("BFF_CACHE_PRICE_FRESH", "30s")])).expect("valid");
    assert_eq!(c.fragments[0].fresh_for, Duration::from_secs(30));
    let err = BffConfig::load(SPEC, None, env(&[("BFF_CACHE_PRICE_STALE", "long")]))
        .expect_err("invalid");
    assert_eq!(err.key, "BFF_CACHE_PRICE_STALE");
    let err = BffConfig::load(SPEC, None, env(&[("BFF_CACHE_PRISE_FRESH", "30s")]))
        .expect_err("an unknown kind");
    assert_eq!(err.key, "BFF_CACHE_PRISE_FRESH");
    assert!(
        err.message.contains("\"prise\"") && err.message.contains("its kinds: price"),
        "{}",
        err.message
    );
    // Keys of the cache itself are not kinds.
    BffConfig::load(SPEC, None, env(&[("BFF_CACHE_STALE_FOR", "1m")])).expect("valid");
    assert_eq!(policy(&c, "user"), UpstreamPolicy::default());
    assert_eq!(c.issuer, "http://127.0.0.1:7000");
    assert_eq!(c.deadlines.critical, Duration::from_millis(500));
}

#[test]
fn environment_overrides_file_overrides_defaults() {
    let dir = std::env::temp_dir().join(format!("bff-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("c.toml");
    std::fs::write(
        &file,
        "listen = \"0.0.0.0:9000\"\naudience = \"from-file\"\n[upstream.user]\ntimeout = \"300ms\"\n[upstream.all]\nfailure_rate = 70\nretries = 0\n",
    )
    .expect("write");
    let c = BffConfig::load(
        SPEC,
        Some(&file),
        env(&[
            ("BFF_AUDIENCE", "from-env"),
            ("BFF_MOBILE_SERVICE_HOST", "10.0.0.1"),
        ]),
    )
    .expect("valid");
    assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(c.audience, "from-env");
    assert_eq!(policy(&c, "user").timeout, Duration::from_millis(300));
    assert_eq!(policy(&c, "user").breaker.failure_rate, 70);
    assert_eq!(
        (
            policy(&c, "order").breaker.failure_rate,
            policy(&c, "order").retry.max_retries
        ),
        (70, 0),
        "the all block applies to every upstream"
    );
    assert_eq!(
        c.warnings,
        ["unknown variable BFF_MOBILE_SERVICE_HOST ignored"]
    );
    std::fs::write(&file, "lisen = \"0.0.0.0:9000\"\n").expect("write");
    let err = BffConfig::load(SPEC, Some(&file), env(&[])).expect_err("typo");
    assert_eq!(err.key, "BFF_LISEN");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("BFF_LISTEN", "localhost"),
        ("BFF_JWKS_URL", "not a url"),
        ("BFF_JWKS_URL", "ftp://x/jwks"),
        ("BFF_UPSTREAM_USER", "::"),
        ("BFF_UPSTREAM_ORDER_TIMEOUT", "soon"),
        ("BFF_UPSTREAM_ORDER_TIMEOUT", "0ms"),
        ("BFF_UPSTREAM_ALL_FAILURE_RATE", "0"),
        ("BFF_UPSTREAM_ALL_FAILURE_RATE", "101"),
        ("BFF_UPSTREAM_USER_SLOW_RATE", "x"),
        ("BFF_UPSTREAM_USER_BREAKER_MIN_CALLS", "50"),
        ("BFF_UPSTREAM_USER_RETRIES", "11"),
        ("BFF_UPSTREAM_USER_RETRY_BUDGET", "-1"),
        ("BFF_UPSTREAM_USER_COALESCE", "maybe"),
        ("BFF_UPSTREAM_ORDER_CRITICAL_RESERVE", "150"),
        ("BFF_UPSTREAM_PRODUCT_MAX_CONCURRENCY", "-3"),
        ("BFF_DEADLINE_CRITICAL", "10s"),
        ("BFF_LOG_FORMAT", "xml"),
        ("BFF_BODY_LIMIT", "big"),
        ("BFF_MAX_IN_FLIGHT", "0"),
        ("BFF_MAX_IN_FLIGHT", "many"),
        ("BFF_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("BFF_TRUSTED_PROXIES", "10.0.0.0/8, lb.internal"),
        ("BFF_CLIENT_ADDRESS_HEADER", "x-real-ip"),
    ];
    for (key, value) in cases {
        let err = BffConfig::load(SPEC, None, env(&[(key, value)])).expect_err(key);
        let expected = if key == "BFF_DEADLINE_CRITICAL" {
            "BFF_DEADLINE_REQUEST"
        } else {
            key
        };
        assert_eq!(err.key, expected, "{key}={value}: {err}");
        assert!(!err.message.is_empty());
    }
}

#[test]
fn more_issuers_from_the_environment_and_the_file() {
    let c = BffConfig::load(
        SPEC,
        None,
        env(&[
            ("BFF_ISSUERS", "partners, staff"),
            ("BFF_ISSUER_PARTNERS_ISS", "https://login.partner.example"),
            (
                "BFF_ISSUER_PARTNERS_JWKS_URL",
                "https://login.partner.example/jwks",
            ),
            ("BFF_ISSUER_PARTNERS_AUDIENCES", "partner-api, bff-test"),
            ("BFF_ISSUER_PARTNERS_ALGORITHMS", "ES256,EdDSA"),
            ("BFF_ISSUER_PARTNERS_SCOPE_CLAIM", "scp"),
            ("BFF_ISSUER_STAFF_ISS", "https://sso.example"),
            ("BFF_ISSUER_STAFF_JWKS_URL", "https://sso.example/keys"),
        ]),
    )
    .expect("valid");
    assert_eq!(c.extra_issuers.len(), 2);
    let partners = &c.extra_issuers[0];
    assert_eq!(partners.name, "partners");
    assert_eq!(partners.audiences, ["partner-api", "bff-test"]);
    assert_eq!(
        partners.algorithms,
        [
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::Algorithm::EdDSA
        ]
    );
    assert_eq!(
        (partners.scope_claim.as_str(), partners.tier_claim.as_str()),
        ("scp", "tier")
    );
    assert_eq!(
        c.extra_issuers[1].audiences,
        std::slice::from_ref(&c.audience),
        "the BFF's by default"
    );
    assert!(
        BffConfig::defaults(SPEC).extra_issuers.is_empty(),
        "one issuer by default"
    );

    let dir = std::env::temp_dir().join(format!("bff-issuers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("bff.toml");
    std::fs::write(
        &file,
        "issuers = \"partners\"\n[issuer.partners]\niss = \"https://p.example\"\njwks_url = \"https://p.example/jwks\"\ntier_claim = \"plan\"\n",
    )
    .expect("write");
    let c = BffConfig::load(SPEC, Some(&file), env(&[])).expect("valid file");
    assert_eq!(c.extra_issuers[0].issuer, "https://p.example");
    assert_eq!(c.extra_issuers[0].tier_claim, "plan");

    for (pairs, key) in [
        (vec![("BFF_ISSUERS", "bad name")], "BFF_ISSUERS"),
        (vec![("BFF_ISSUERS", "default")], "BFF_ISSUERS"),
        (vec![("BFF_ISSUERS", "p")], "BFF_ISSUER_P_ISS"),
        (
            vec![("BFF_ISSUERS", "p"), ("BFF_ISSUER_P_ISS", "x")],
            "BFF_ISSUER_P_JWKS_URL",
        ),
        (
            vec![
                ("BFF_ISSUERS", "p"),
                ("BFF_ISSUER_P_ISS", "http://127.0.0.1:7000"),
                ("BFF_ISSUER_P_JWKS_URL", "http://x/jwks"),
            ],
            "BFF_ISSUER_P_ISS",
        ),
        (
            vec![
                ("BFF_ISSUERS", "p"),
                ("BFF_ISSUER_P_ISS", "x"),
                ("BFF_ISSUER_P_JWKS_URL", "http://x/jwks"),
                ("BFF_ISSUER_P_ALGORITHMS", "HS256"),
            ],
            "BFF_ISSUER_P_ALGORITHMS",
        ),
    ] {
        let err = BffConfig::load(SPEC, None, env(&pairs)).expect_err(key);
        assert_eq!(err.key, key, "{pairs:?}: {err}");
    }
}

#[test]
fn arguments() {
    let args =
        |a: &[&str]| Args::parse(SPEC, a.iter().map(|s| (*s).to_owned())).map(|args| args.config);
    assert_eq!(args(&[]).expect("none"), None);
    assert_eq!(
        args(&["--config", "a.toml"]).expect("path"),
        Some("a.toml".into())
    );
    assert_eq!(
        args(&["--config=b.toml"]).expect("path"),
        Some("b.toml".into())
    );
    assert!(args(&["--config"]).is_err());
    assert!(args(&["--port", "1"]).is_err());
}

#[test]
fn the_command_line() {
    let parse = |a: &[&str]| Args::parse(SPEC, a.iter().map(|s| (*s).to_owned()));
    assert_eq!(parse(&[]).expect("none"), Args::default());
    assert_eq!(
        parse(&["--config", "a.toml", "--health-check"]).expect("both"),
        Args {
            config: Some("a.toml".into()),
            health_check: true
        }
    );
    let usage = parse(&["--port", "1"]).expect_err("unknown");
    assert!(usage.use_stderr(), "a usage error fails (exit 2)");
    assert_eq!(usage.exit_code(), 2);
    for asked in ["--help", "--version"] {
        let answer = parse(&[asked]).expect_err("answered, not run");
        assert!(!answer.use_stderr(), "{asked} is not a failure");
        assert!(answer.to_string().contains("bff-test"), "{answer}");
    }
}
