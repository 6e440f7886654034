//! The verified identity of a caller.

use axum::extract::FromRequestParts;
use bff_problem::ApiError;
use http::request::Parts;

/// Rate-limit tier of a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// The lowest limits.
    Free,
    /// The default when a token says nothing.
    Standard,
    /// The highest limits.
    Premium,
}

impl Tier {
    /// Parses a `tier` claim.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "free" => Some(Tier::Free),
            "standard" => Some(Tier::Standard),
            "premium" => Some(Tier::Premium),
            _ => None,
        }
    }

    /// The claim's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Standard => "standard",
            Tier::Premium => "premium",
        }
    }
}

/// What a verified token says, as the BFFs use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSet {
    /// The subject: a user's UUID (mobile, web) or a partner's client id.
    pub sub: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Rate-limit tier (`standard` when the token has none).
    pub tier: Tier,
    /// When the token expires (`exp`, seconds since the Unix epoch): a
    /// long-lived stream opened with it must end then.
    pub expires_at: i64,
    /// The issuer that vouched for it (its configured name).
    pub issuer: std::sync::Arc<str>,
}

/// The claims of a verified token. Shared, not copied: the remembered
/// token, the request and every extractor hold the same allocation
/// (fields read through [`ClaimSet`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims(std::sync::Arc<ClaimSet>);

impl std::ops::Deref for Claims {
    type Target = ClaimSet;
    fn deref(&self) -> &ClaimSet {
        &self.0
    }
}

impl Claims {
    /// Claims from what a token said.
    pub fn new(set: ClaimSet) -> Self {
        Claims(std::sync::Arc::new(set))
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The user id of a user token. For the user-facing BFFs the user is
    /// always the token's subject, never a request parameter; a token whose
    /// subject is not a UUID (a partner's) is refused with 403.
    pub fn user_id(&self) -> Result<uuid::Uuid, ApiError> {
        uuid::Uuid::try_parse(&self.sub).map_err(|_| {
            ApiError::forbidden("this API is for user tokens; the subject is not a user id")
        })
    }

    /// 403 unless `scope` was granted, with the RFC 6750 challenge naming
    /// the scope.
    pub fn require_scope(&self, scope: &str) -> Result<(), ApiError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::insufficient_scope(scope))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Claims>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))
    }
}
