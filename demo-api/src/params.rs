//! Integer query parameters (`?ms=250`, `?code=503`, `?n=1024`): required, range-checked, and a
//! plain-text 400 that names the allowed range when they are missing or wrong.

use std::collections::HashMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The parsed query string, as handlers extract it (`Query<QueryParams>`).
pub type QueryParams = HashMap<String, String>;

/// A 400 response with a one-line explanation.
#[derive(Debug)]
pub struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, format!("{}\n", self.0)).into_response()
    }
}

/// The integer query parameter `name`, which must lie in `allowed`.
pub fn integer_in_range<T>(
    query: &QueryParams,
    name: &str,
    allowed: RangeInclusive<T>,
) -> Result<T, BadRequest>
where
    T: FromStr + PartialOrd + Display,
{
    let problem = || {
        BadRequest(format!(
            "query parameter `{name}` must be an integer in {}..={}",
            allowed.start(),
            allowed.end()
        ))
    };
    let value: T = query
        .get(name)
        .and_then(|text| text.parse().ok())
        .ok_or_else(problem)?;
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(problem())
    }
}
