//! Image URLs sized for the device.
//!
//! Why: a full-size avatar is ten times the bytes a 48-point circle needs.
//! The device pixel ratio comes from `?dpr=`, else the `Sec-CH-DPR` / `DPR`
//! client hints, else 2; `Save-Data: on` caps it at 1 and lowers quality.

use bff_problem::FieldError;
use http::HeaderMap;

/// How images should be sized for this request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ImageSizing {
    dpr: f64,
    save_data: bool,
}

impl ImageSizing {
    /// From the `dpr` query value and the request headers.
    pub(crate) fn from_request(dpr: Option<&str>, headers: &HeaderMap) -> Result<Self, FieldError> {
        let save_data = headers
            .get("save-data")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"on"));
        let parse = |raw: &str| {
            raw.trim()
                .parse::<f64>()
                .ok()
                .filter(|d| (1.0..=4.0).contains(d))
        };
        let dpr = match dpr {
            Some(raw) => {
                parse(raw).ok_or_else(|| FieldError::new("dpr", "must be a number from 1 to 4"))?
            }
            None => ["sec-ch-dpr", "dpr"]
                .iter()
                .find_map(|h| {
                    headers
                        .get(*h)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse)
                })
                .unwrap_or(2.0),
        };
        Ok(ImageSizing {
            dpr: if save_data { 1.0 } else { dpr },
            save_data,
        })
    }

    /// `url` resized to `points` wide at this density, as a value that
    /// writes itself where it is serialised (no `String` per image).
    pub(crate) fn sized(self, url: &str, points: u32) -> SizedImage<'_> {
        SizedImage {
            url,
            width: (f64::from(points) * self.dpr).round() as u32,
            quality: if self.save_data { 50 } else { 75 },
        }
    }
}

/// An image URL with its size parameters (`…?w=96&q=75`). It serialises
/// as that string, written into the body directly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SizedImage<'a> {
    url: &'a str,
    width: u32,
    quality: u8,
}

impl std::fmt::Display for SizedImage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        write!(f, "{}{sep}w={}&q={}", self.url, self.width, self.quality)
    }
}

impl serde::Serialize for SizedImage<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// A sized URL serialises as the JSON string of what it displays,
    /// escaped like any other string.
    #[test]
    fn a_sized_url_serialises_as_an_escaped_string() {
        let sizing = ImageSizing::from_request(None, &HeaderMap::new()).expect("ok");
        assert_eq!(
            serde_json::to_string(&sizing.sized("a\"b.jpg?v=1", 48)).expect("json"),
            r#""a\"b.jpg?v=1&w=96&q=75""#
        );
    }

    #[test]
    fn density_from_query_hints_and_save_data() {
        let mut h = HeaderMap::new();
        assert_eq!(
            ImageSizing::from_request(None, &h)
                .expect("ok")
                .sized("a.jpg", 48)
                .to_string(),
            "a.jpg?w=96&q=75"
        );
        assert_eq!(
            ImageSizing::from_request(Some("3"), &h)
                .expect("ok")
                .sized("a.jpg?v=1", 48)
                .to_string(),
            "a.jpg?v=1&w=144&q=75"
        );
        h.insert("dpr", HeaderValue::from_static("1.5"));
        assert_eq!(
            ImageSizing::from_request(None, &h)
                .expect("ok")
                .sized("a.jpg", 48)
                .to_string(),
            "a.jpg?w=72&q=75"
        );
        h.insert("save-data", HeaderValue::from_static("on"));
        assert_eq!(
            ImageSizing::from_request(Some("3"), &h)
                .expect("ok")
                .sized("a.jpg", 48)
                .to_string(),
            "a.jpg?w=48&q=50"
        );
        for bad in ["0", "5", "x", "NaN"] {
            assert_eq!(
                ImageSizing::from_request(Some(bad), &h)
                    .expect_err(bad)
                    .field,
                "dpr"
            );
        }
    }
}
