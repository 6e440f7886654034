//! Bearer-token authentication for the BFFs.
//!
//! Tokens are JWTs verified against the identity provider's JWKS, exactly as
//! the contract's Tokens section says: the key is chosen by the token's
//! `kid`, and the algorithm comes from that key — never from the token alone
//! — so `alg: none`, HMAC tokens (the algorithm-confusion attack) and a key
//! used with another algorithm are all refused. `iss`, `aud`, `exp` and `nbf`
//! (30 s leeway) are checked; `sub` is required.
//!
//! Several issuers can be trusted at once ([`IssuerConfig`]: each with its
//! JWKS, audiences, algorithms and claim names); the token's `iss` selects
//! one before any key is looked up, and an unknown `iss` is refused.
//! Refusals carry RFC 6750 challenges: `Bearer realm="…"` without
//! credentials, `error="invalid_token"` with the reason for a refused
//! token, `error="insufficient_scope", scope="…"` for a missing scope.
//!
//! The JWKS is fetched in the background and cached; an unknown `kid`
//! triggers a refetch (at most one per `min_refetch`, so forged kids cannot
//! make us hammer the provider), and the last good keys stay in use while the
//! provider is down.
//!
//! In a router: [`require_auth`] as a middleware puts verified [`Claims`] in
//! the request; handlers take `Claims` as an extractor and call
//! [`Claims::require_scope`].

#![warn(missing_docs)]

mod claims;
mod jwks;
mod settings;

pub use claims::{ClaimSet, Claims, Tier};
pub use jsonwebtoken::jwk::JwkSet;
pub use jwks::{AuthConfig, AuthError, Authenticator, IssuerConfig};
pub use settings::AuthSettings;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bff_problem::ApiError;
use http::header::AUTHORIZATION;

/// Middleware: verifies the bearer token and stores the [`Claims`] in the
/// request extensions; 401 problem+json otherwise.
pub async fn require_auth(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    match authenticate(&auth, &mut request).await {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// What [`require_auth`] does before the handler, for a middleware of
/// one's own: verifies the bearer token of `request` and stores its
/// [`Claims`] in the request's extensions, or says why it is refused (a
/// 401 problem with its RFC 6750 challenge). Counts refusals by reason and
/// names the caller in the current span by a pseudonym.
pub async fn authenticate<B>(
    auth: &Authenticator,
    request: &mut http::Request<B>,
) -> Result<(), ApiError> {
    let token = match bearer(request.headers()) {
        Ok(token) => token,
        Err((reason, detail)) => {
            metrics::counter!(bff_telemetry::names::AUTH_REJECTED, "reason" => reason).increment(1);
            // RFC 6750 §3.1: a request without credentials gets the
            // challenge without an error code; a malformed one is an
            // invalid token.
            return Err(match reason {
                "missing" | "not_bearer" => ApiError::unauthenticated(auth.realm(), detail),
                _ => ApiError::invalid_token(auth.realm(), detail),
            });
        }
    };
    match auth.verify(token).await {
        Ok(claims) => {
            // The request span names the user by a pseudonym, never the id.
            let span = tracing::Span::current();
            if !span.is_disabled() {
                span.record("enduser.pseudo.id", bff_telemetry::pseudonym(&claims.sub));
            }
            request.extensions_mut().insert(claims);
            Ok(())
        }
        Err(error) => {
            metrics::counter!(bff_telemetry::names::AUTH_REJECTED, "reason" => error.reason())
                .increment(1);
            tracing::debug!(%error, "token rejected");
            Err(ApiError::invalid_token(
                auth.realm(),
                error.client_message(),
            ))
        }
    }
}

/// The token of an `Authorization: Bearer …` header, or why there is none:
/// a metrics label and what the client is told.
fn bearer(headers: &http::HeaderMap) -> Result<&str, (&'static str, &'static str)> {
    let refuse = |reason, detail| (reason, detail);
    let value = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| refuse("missing", "an Authorization: Bearer token is required"))?;
    let value = value
        .to_str()
        .map_err(|_| refuse("malformed", "the Authorization header is not valid text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| refuse("not_bearer", "expected Authorization: Bearer <token>"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(refuse(
            "not_bearer",
            "expected Authorization: Bearer <token>",
        ));
    }
    let token = token.trim();
    // A JWT is three base64url parts; anything else (or anything huge) is
    // refused before any parsing.
    if token.len() > 8 * 1024 || token.split('.').count() != 3 {
        return Err(refuse("malformed", "the bearer token is not a JWT"));
    }
    Ok(token)
}
