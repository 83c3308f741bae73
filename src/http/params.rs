//! Query-string and path parameters shared by the resources: ids, paging.

use std::collections::HashMap;

use super::error::ApiError;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// The decoded query string (the last value of a repeated key wins).
pub fn query(q: Option<&str>) -> HashMap<String, String> {
    q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// A numeric id from the path; anything else is an unknown id (404).
pub fn id(kind: &str, s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>()
        .map_err(|_| ApiError::NotFound(format!("no {kind} with id {s:?}")))
}

/// `limit` (1..=500, default 50) and `cursor` (opaque, from `next`).
pub fn paging(query: &HashMap<String, String>) -> Result<(usize, Option<u64>), ApiError> {
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be a number from 1 to {MAX_LIMIT}, not {s:?}"
                )));
            }
        },
    };
    let cursor = match query.get("cursor").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid cursor {s:?}")))?,
        ),
    };
    Ok((limit, cursor))
}

/// A non-empty query value.
pub fn filter(query: &HashMap<String, String>, key: &str) -> Option<String> {
    query.get(key).cloned().filter(|s| !s.is_empty())
}
