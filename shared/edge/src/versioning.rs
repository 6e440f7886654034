//! API versions: announcing a version's end, and counting who still calls
//! it.
//!
//! A deprecated version says so on **every** response, errors included
//! (`Deprecation`, RFC 9745; `Sunset`, RFC 8594; `Link` to its successor and
//! to the deprecation notice, RFC 8288), so a client that only ever sees
//! errors learns it too. Each call is counted per BFF, version and client,
//! so a team can see when a version may be switched off.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bff_auth::Claims;
use bff_telemetry::names;
use http::{HeaderName, HeaderValue, header};

/// A version's life, for its responses' headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// The BFF, for the metric.
    pub bff: &'static str,
    /// The version label (`v1`).
    pub version: &'static str,
    /// When it was deprecated, as RFC 9745 says (`@` and unix seconds);
    /// `None` for a current version.
    pub deprecation: Option<&'static str>,
    /// When it goes away (an HTTP date, RFC 8594).
    pub sunset: Option<&'static str>,
    /// `Link` values: the successor, the deprecation notice.
    pub links: &'static [&'static str],
}

/// The `Deprecation` header (RFC 9745).
pub const DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
/// The `Sunset` header (RFC 8594).
pub const SUNSET: HeaderName = HeaderName::from_static("sunset");

/// Counts a call of `version` by the caller of `claims`.
pub fn count_call(bff: &'static str, version: &'static str, claims: Option<&Claims>) {
    let client = match claims {
        Some(c) if uuid::Uuid::try_parse(&c.sub).is_err() => c.sub.clone(),
        Some(_) => "user".to_owned(),
        None => "anonymous".to_owned(),
    };
    metrics::counter!(names::API_VERSION_CALLS, "bff" => bff, "version" => version, "client" => client)
        .increment(1);
}

/// Adds `lifecycle`'s headers to a response (unless already there).
pub fn announce(lifecycle: &Lifecycle, response: &mut Response) {
    let headers = response.headers_mut();
    if let Some(deprecation) = lifecycle.deprecation {
        headers.insert(DEPRECATION, HeaderValue::from_static(deprecation));
    }
    if let Some(sunset) = lifecycle.sunset {
        headers.insert(SUNSET, HeaderValue::from_static(sunset));
    }
    if !headers.contains_key(header::LINK) {
        for link in lifecycle.links {
            headers.append(header::LINK, HeaderValue::from_static(link));
        }
    }
}

/// Middleware of a version's routes: counts the call, and announces the
/// version's lifecycle on every response.
pub async fn version(State(lifecycle): State<Lifecycle>, request: Request, next: Next) -> Response {
    count_call(
        lifecycle.bff,
        lifecycle.version,
        request.extensions().get::<Claims>(),
    );
    let mut response = next.run(request).await;
    announce(&lifecycle, &mut response);
    response
}
