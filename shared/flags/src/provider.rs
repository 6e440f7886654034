//! The OpenFeature side: this crate's flags as a provider, and the hook
//! that counts and traces evaluations.

use std::sync::Arc;

use async_trait::async_trait;
use bff_telemetry::names;
use open_feature::provider::{FeatureProvider, ProviderMetadata, ResolutionDetails};
use open_feature::{
    EvaluationContext, EvaluationDetails, EvaluationError, EvaluationErrorCode, EvaluationReason,
    EvaluationResult, Hook, HookContext, HookHints, StructValue, Value,
};

use crate::store::Store;

/// The provider's name, in metadata and telemetry.
pub const PROVIDER: &str = "bff-flags";

/// A BFF's declared flags as an OpenFeature provider. Every flag is a
/// string flag whose value is its variant, chosen by the subject's bucket
/// (the evaluation context's targeting key, required); a flag whose
/// variants are `on` and `off` reads as a boolean too.
#[derive(Debug)]
pub struct Provider {
    store: Arc<Store>,
    metadata: ProviderMetadata,
}

impl Provider {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Provider {
            store,
            metadata: ProviderMetadata::new(PROVIDER),
        }
    }

    fn resolve(&self, key: &str, context: &EvaluationContext) -> EvaluationResult<&'static str> {
        let subject = context
            .targeting_key
            .as_deref()
            .ok_or_else(|| EvaluationError {
                code: EvaluationErrorCode::TargetingKeyMissing,
                message: Some("a split needs the subject as the targeting key".to_owned()),
            })?;
        self.store
            .variant(key, subject)
            .ok_or_else(|| EvaluationError {
                code: EvaluationErrorCode::FlagNotFound,
                message: Some(format!("{key} is not a flag of this BFF")),
            })
    }
}

fn details<T>(value: T, variant: &str) -> ResolutionDetails<T> {
    ResolutionDetails {
        value,
        variant: Some(variant.to_owned()),
        reason: Some(EvaluationReason::Split),
        flag_metadata: None,
    }
}

fn mismatch<T>(kind: &str) -> EvaluationResult<T> {
    Err(EvaluationError {
        code: EvaluationErrorCode::TypeMismatch,
        message: Some(format!(
            "flags here are strings (their variant), not {kind}"
        )),
    })
}

#[async_trait]
impl FeatureProvider for Provider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        let variant = self.resolve(flag_key, evaluation_context)?;
        match variant {
            "on" => Ok(details(true, variant)),
            "off" => Ok(details(false, variant)),
            _ => mismatch("booleans (variants other than on and off)"),
        }
    }

    async fn resolve_int_value(
        &self,
        _flag_key: &str,
        _evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        mismatch("integers")
    }

    async fn resolve_float_value(
        &self,
        _flag_key: &str,
        _evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        mismatch("numbers")
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        let variant = self.resolve(flag_key, evaluation_context)?;
        Ok(details(variant.to_owned(), variant))
    }

    async fn resolve_struct_value(
        &self,
        _flag_key: &str,
        _evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        mismatch("structures")
    }
}

/// Counts every evaluation by flag and variant
/// (`bff_flag_evaluations_total`, `default` when it failed) and records it
/// as a `feature_flag.evaluation` event with the OpenTelemetry
/// feature-flag attributes, in the request's span.
///
/// The counters are registered once, when the hook is made (so every
/// flag's series exist from start-up), and an evaluation only finds its
/// own: no label is allocated or hashed into the registry per request.
#[derive(Debug, Clone)]
pub struct TelemetryHook {
    counters: Arc<Vec<(&'static str, Variants)>>,
}

/// A flag's counters, by variant.
type Variants = Vec<(&'static str, metrics::Counter)>;

impl TelemetryHook {
    /// The hook of the BFF `bff` reading `flags`.
    pub fn new(bff: &'static str, flags: &'static [crate::Flag]) -> Self {
        let counters = flags
            .iter()
            .map(|flag| {
                let variants = flag
                    .variants
                    .iter()
                    .copied()
                    .chain(["default"])
                    .map(|variant| {
                        let counter = metrics::counter!(
                            names::FLAG_EVALUATIONS,
                            "bff" => bff,
                            "flag" => flag.key,
                            "variant" => variant
                        );
                        (variant, counter)
                    })
                    .collect();
                (flag.key, variants)
            })
            .collect();
        TelemetryHook {
            counters: Arc::new(counters),
        }
    }

    fn count(&self, flag: &str, variant: &str) {
        let counter = self
            .counters
            .iter()
            .find(|(key, _)| *key == flag)
            .and_then(|(_, variants)| variants.iter().find(|(v, _)| *v == variant));
        if let Some((_, counter)) = counter {
            counter.increment(1);
        }
    }
}

#[async_trait]
impl Hook for TelemetryHook {
    async fn before<'a>(
        &self,
        _context: &HookContext<'a>,
        _hints: Option<&'a HookHints>,
    ) -> Result<Option<EvaluationContext>, EvaluationError> {
        Ok(None)
    }

    async fn after<'a>(
        &self,
        _context: &HookContext<'a>,
        _details: &EvaluationDetails<Value>,
        _hints: Option<&'a HookHints>,
    ) -> Result<(), EvaluationError> {
        Ok(())
    }

    async fn error<'a>(
        &self,
        context: &HookContext<'a>,
        error: &EvaluationError,
        _hints: Option<&'a HookHints>,
    ) {
        tracing::warn!(
            feature_flag.key = context.flag_key,
            error.type = %error.code,
            error.message = error.message.as_deref().unwrap_or_default(),
            "flag evaluation failed; the default variant applies"
        );
    }

    async fn finally<'a>(
        &self,
        context: &HookContext<'a>,
        details: &EvaluationDetails<Value>,
        _hints: Option<&'a HookHints>,
    ) {
        let variant = details.variant.as_deref().unwrap_or("default");
        tracing::debug!(
            feature_flag.key = context.flag_key,
            feature_flag.result.variant = variant,
            feature_flag.provider.name = PROVIDER,
            "feature_flag.evaluation"
        );
        self.count(context.flag_key, variant);
    }
}
