//! Reading a request body: bounded in size and in time, so that a slow or
//! endless upload cannot hold a connection slot.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use hyper::body::Incoming;

use super::respond::{Reply, error};

/// Longest time to receive a whole request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The body, or the error reply (413 too large, 408 too slow, 400 broken).
pub async fn read(body: Incoming, max: usize) -> Result<Bytes, Reply> {
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, max).collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "request body too large",
        )),
        Ok(Err(_)) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request body could not be read",
        )),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request body did not arrive in time",
        )),
    }
}
