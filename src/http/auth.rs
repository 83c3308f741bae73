//! Who may drive the API: the checks the router runs before a handler.
//!
//! - `Host` (every request): an IP address, or a name in `http.allowed_hosts`.
//!   A web page whose name was re-pointed at us (DNS rebinding) sends its own
//!   name and is answered 421; IP addresses cannot be rebound.
//! - state-changing requests: no foreign `Origin`, no cross-site
//!   `Sec-Fetch-Site`, and `Content-Type: application/json`, which a browser
//!   cannot send cross-site without a CORS preflight that we never grant.
//! - the bearer token under /api/ when one is configured: the scheme is
//!   case-insensitive (RFC 9110), the token compared in constant time.

use std::net::{Ipv4Addr, Ipv6Addr};

use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, ORIGIN, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Request, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::respond::{Reply, error};
use crate::config::HttpConfig;

/// A request's authority, split: lower-case host (IPv6 in brackets) and port.
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
    ip: bool,
}

fn parse_authority(s: &str) -> Option<Authority> {
    let s = s.trim().to_ascii_lowercase();
    let (host, port, ip) = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
        };
        (format!("[{inside}]"), port, true)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
            None => (s.as_str(), None),
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return None;
        }
        (host.to_string(), port, host.parse::<Ipv4Addr>().is_ok())
    };
    Some(Authority { host, port, ip })
}

/// The authority the request names: the absolute URI's, or `Host`.
fn request_authority<B>(req: &Request<B>) -> Result<Option<Authority>, ()> {
    if let Some(a) = req.uri().authority() {
        return parse_authority(a.as_str()).map(Some).ok_or(());
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    let (Some(value), None) = (hosts.next(), hosts.next()) else {
        // None at all, or more than one.
        return if req.headers().contains_key(HOST) {
            Err(())
        } else {
            Ok(None)
        };
    };
    let value = value.to_str().map_err(|_| ())?;
    parse_authority(value).map(Some).ok_or(())
}

fn host_allowed(config: &HttpConfig, a: &Authority) -> bool {
    a.ip || config
        .allowed_hosts
        .iter()
        .any(|h| h.name == a.host && h.port.is_none_or(|p| Some(p) == a.port))
}

/// `Some(reply)` when the request's Host is not one this server answers to.
pub fn check_host<B>(config: &HttpConfig, req: &Request<B>) -> Option<Reply> {
    match request_authority(req) {
        Ok(Some(a)) if host_allowed(config, &a) => None,
        Ok(Some(a)) => Some(error(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected",
            format!(
                "this server does not answer to the host name {:?}; add it to http.allowed_hosts",
                a.host
            ),
        )),
        // HTTP/1.0 without Host: no browser sends that.
        Ok(None) if req.version() < hyper::Version::HTTP_11 => None,
        Ok(None) => Some(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "missing Host header",
        )),
        Err(()) => Some(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "invalid Host header",
        )),
    }
}

/// `Some(reply)` (403) when a state-changing request comes from another
/// origin: a foreign or opaque (`null`) `Origin`, or `Sec-Fetch-Site`
/// `cross-site` / `same-site`.
pub fn check_same_origin(headers: &HeaderMap) -> Option<Reply> {
    let forbidden = |why: &str| {
        Some(error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            format!("{why}: state-changing requests must come from the same origin"),
        ))
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if site == "cross-site" || site == "same-site" {
            return forbidden("Sec-Fetch-Site is not same-origin");
        }
    }
    // No Origin: not a browser's cross-origin request (curl, scripts, `mailgate sync`).
    let origin = headers.get(ORIGIN)?;
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(parse_authority);
    match (origin.to_str().ok().and_then(parse_origin), host) {
        (Some((scheme_port, o)), Some(h))
            if o.host == h.host
                && o.port.unwrap_or(scheme_port) == h.port.unwrap_or(scheme_port) =>
        {
            None
        }
        _ => forbidden("foreign Origin"),
    }
}

/// `scheme://authority` -> (the scheme's default port, authority).
fn parse_origin(origin: &str) -> Option<(u16, Authority)> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    if rest.contains('/') {
        return None;
    }
    Some((default, parse_authority(rest)?))
}

/// `Some(reply)` (415) unless the body is declared as JSON.
pub fn check_json(headers: &HeaderMap) -> Option<Reply> {
    let media = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if media.as_deref() == Some("application/json") {
        return None;
    }
    Some(error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "state-changing requests need Content-Type: application/json",
    ))
}

/// `Some(reply)` (401) when a token is configured and the request does not
/// carry it as `Authorization: Bearer TOKEN`.
pub fn check_token(expected: Option<&str>, headers: &HeaderMap) -> Option<Reply> {
    let expected = expected?;
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    if given.is_some_and(|g| same_secret(g, expected)) {
        return None;
    }
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong bearer token (Authorization: Bearer ...)",
    );
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"mailgate\""),
    );
    Some(r)
}

/// The token of a `Bearer` credential; the scheme in any case.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares digests in constant time, so neither the content nor the length
/// of the expected token shows in the timing.
fn same_secret(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AllowedHost;

    fn config(hosts: &[&str]) -> HttpConfig {
        HttpConfig {
            listen: "127.0.0.1:8025".parse().unwrap(),
            api_token_env: None,
            allowed_hosts: hosts
                .iter()
                .map(|h| AllowedHost::parse(h).unwrap())
                .collect(),
            max_connections: 1,
            header_read_timeout: std::time::Duration::from_secs(1),
        }
    }

    fn with_host(host: &str) -> Request<()> {
        Request::get("/healthz")
            .header(HOST, host)
            .body(())
            .unwrap()
    }

    #[test]
    fn hosts() {
        let c = config(&["localhost", "mailgate.internal:9000"]);
        for ok in [
            "localhost",
            "LOCALHOST:8025",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:8025",
            "[::1]",
            "[::1]:8025",
            "10.1.2.3:80",
            "mailgate.internal:9000",
        ] {
            assert!(check_host(&c, &with_host(ok)).is_none(), "{ok}");
        }
        for bad in [
            "rebind.attacker.example",
            "localhost.attacker.example:8025",
            "mailgate.internal:9001",
            "mailgate.internal",
            "",
            "[::1",
            "localhost:x",
            "a b",
        ] {
            assert!(check_host(&c, &with_host(bad)).is_some(), "{bad:?}");
        }
        let none = Request::get("/").body(()).unwrap();
        assert!(check_host(&c, &none).is_some(), "HTTP/1.1 without Host");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origins() {
        let same = |o: &str, host: &str| {
            check_same_origin(&headers(&[("origin", o), ("host", host)])).is_none()
        };
        assert!(same("http://127.0.0.1:8025", "127.0.0.1:8025"));
        assert!(same("http://localhost", "localhost:80"));
        assert!(same("https://mg.example", "mg.example"));
        assert!(!same("http://evil.example", "127.0.0.1:8025"));
        assert!(!same("http://127.0.0.1:3000", "127.0.0.1:8025"));
        assert!(!same("null", "127.0.0.1:8025"));
        assert!(!same("file://", "127.0.0.1:8025"));
        assert!(check_same_origin(&headers(&[("host", "localhost")])).is_none());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_some());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_none());
    }

    #[test]
    fn json_only() {
        assert!(check_json(&headers(&[("content-type", "application/json")])).is_none());
        assert!(
            check_json(&headers(&[(
                "content-type",
                "Application/JSON; charset=utf-8"
            )]))
            .is_none()
        );
        assert!(check_json(&headers(&[("content-type", "text/plain")])).is_some());
        assert!(
            check_json(&headers(&[(
                "content-type",
                "application/x-www-form-urlencoded"
            )]))
            .is_some()
        );
        assert!(check_json(&HeaderMap::new()).is_some());
    }

    #[test]
    fn tokens() {
        let ok = |v: &str| check_token(Some("s3cret"), &headers(&[("authorization", v)])).is_none();
        assert!(ok("Bearer s3cret"));
        assert!(ok("bearer s3cret"));
        assert!(ok("BEARER  s3cret "));
        assert!(!ok("Bearer s3cre"));
        assert!(!ok("Bearer s3crett"));
        assert!(!ok("Basic s3cret"));
        assert!(!ok("s3cret"));
        assert!(!ok("Bearer"));
        assert!(check_token(None, &HeaderMap::new()).is_none());
        assert!(check_token(Some("s3cret"), &HeaderMap::new()).is_some());
    }
}
