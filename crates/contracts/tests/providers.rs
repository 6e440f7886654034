//! The provider side: every pact in `contracts/pacts/` verified against the
//! demo services, with each interaction's provider state set through the
//! control API (`POST /provider-states`). And the proof that it bites: a
//! pact altered as a renamed field would alter it fails verification,
//! naming the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use demo_services::{DemoStack, ServiceName};
use pact_verifier::callback_executors::{
    HttpRequestProviderStateExecutor, NullRequestFilterExecutor,
};
use pact_verifier::verification_result::VerificationExecutionResult;
use pact_verifier::{FilterInfo, PactSource, ProviderInfo, ProviderTransport, VerificationOptions};
use serde_json::Value;

/// The pact files, by provider name.
fn pacts() -> BTreeMap<String, Vec<PathBuf>> {
    let dir = contracts::pacts_dir();
    let mut by_provider: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let pact: Value = serde_json::from_str(
            &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            pact["metadata"]["pactSpecification"]["version"],
            "4.0",
            "{} is not a V4 pact",
            path.display()
        );
        let provider = pact["provider"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no provider name", path.display()))
            .to_owned();
        by_provider.entry(provider).or_default().push(path);
    }
    by_provider
}

fn service_of(provider: &str) -> ServiceName {
    let name = provider
        .strip_suffix("-service")
        .unwrap_or_else(|| panic!("provider {provider:?} is not a demo service"));
    ServiceName::parse(name).unwrap_or_else(|| panic!("no demo service {name:?}"))
}

async fn verify(stack: &DemoStack, provider: &str, files: &[&Path]) -> VerificationExecutionResult {
    let url: reqwest::Url = stack
        .url(service_of(provider))
        .parse()
        .expect("the service's URL");
    let info = ProviderInfo {
        name: provider.to_owned(),
        host: url.host_str().expect("a host").to_owned(),
        transports: vec![ProviderTransport {
            transport: "http".to_owned(),
            port: url.port(),
            path: None,
            scheme: Some("http".to_owned()),
        }],
        ..ProviderInfo::default()
    };
    let states = Arc::new(HttpRequestProviderStateExecutor {
        state_change_url: Some(format!("{}/provider-states", stack.control_url())),
        state_change_teardown: true,
        state_change_body: true,
        retries: 0,
    });
    let options = VerificationOptions::<NullRequestFilterExecutor> {
        coloured_output: false,
        ..VerificationOptions::default()
    };
    pact_verifier::verify_provider_async(
        info,
        files
            .iter()
            .map(|f| PactSource::File(f.display().to_string()))
            .collect(),
        FilterInfo::None,
        Vec::new(),
        &options,
        None,
        &states,
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("verifying {provider}: {e}"))
}

fn failures(result: &VerificationExecutionResult) -> String {
    result
        .errors
        .iter()
        .map(|(interaction, error)| format!("{interaction}: {error:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pact_holds_against_the_demo_services() {
    let pacts = pacts();
    // One pact per consumer and provider it calls over HTTP.
    let pairs: usize = pacts.values().map(Vec::len).sum();
    assert!(pairs >= 9, "only {pairs} pacts in contracts/pacts");
    let stack = testkit::start_demo().await;
    for (provider, files) in &pacts {
        let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let result = verify(&stack, provider, &files).await;
        assert!(
            result.result && result.errors.is_empty(),
            "{provider} breaks a consumer's pact:\n{}",
            failures(&result)
        );
        let verified = result.interaction_results.len();
        let written: usize = files
            .iter()
            .map(|f| {
                let pact: Value =
                    serde_json::from_str(&std::fs::read_to_string(f).expect("read")).expect("JSON");
                pact["interactions"].as_array().map_or(0, Vec::len)
            })
            .sum();
        assert_eq!(verified, written, "{provider}: every interaction verified");
    }
}

/// What a provider that renamed `display_name` to `full_name` would answer
/// to a consumer that reads `display_name`: the pact still expects the old
/// name, the service answers without it. Altering the pact's expectation
/// is the same comparison seen from the other side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_field_fails_verification_naming_it() {
    let original = contracts::pacts_dir().join("bff-mobile-user-service.json");
    let text = std::fs::read_to_string(&original)
        .unwrap_or_else(|e| panic!("{}: {e}", original.display()));
    assert!(
        text.contains("\"display_name\""),
        "the fixture reads display_name"
    );
    let altered = text.replace("display_name", "full_name");
    let dir = std::env::temp_dir().join(format!("pact-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let broken = dir.join("bff-mobile-user-service.json");
    std::fs::write(&broken, altered).expect("write the altered pact");

    let stack = testkit::start_demo().await;
    let result = verify(&stack, "user-service", &[&broken]).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!result.result, "verification passed a renamed field");
    let failures = failures(&result);
    assert!(failures.contains("full_name"), "{failures}");
    // The interaction that does not read the profile still holds.
    assert_eq!(result.errors.len(), 1, "{failures}");
}
