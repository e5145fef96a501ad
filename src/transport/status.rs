//! What an HTTP answer means: one table from status and service code to [`ErrorKind`], the
//! `Retry-After` and `x-ms-dop-hint` headers, and failed sends turned into transport errors.

use crate::error::{Error, ErrorKind, ThrottleLimit};
use reqwest::header::HeaderMap;
use std::time::Duration;

/// How the crate treats one failed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// What kind of failure it is.
    pub kind: ErrorKind,
    /// Whether sending the request again may succeed.
    pub retryable: bool,
    /// The service protection limit a 429 named.
    pub throttle_limit: Option<ThrottleLimit>,
}

/// Service codes (Entra's `error`) that say a server error is passing.
const TRANSIENT_CODES: [&str; 2] = ["temporarily_unavailable", "server_error"];

/// The verdict on an answer with HTTP `status` and the service's own error `code`, for the
/// Dataverse Web API and the Entra token endpoint alike.
pub(crate) fn classify(status: u16, code: Option<&str>) -> Verdict {
    let transient_code = code.is_some_and(|c| TRANSIENT_CODES.contains(&c));
    let (kind, retryable) = match status {
        300..=399 => (ErrorKind::Protocol, false),
        401 | 403 => (ErrorKind::Auth, false),
        429 => (ErrorKind::Throttled, true),
        502..=504 => (ErrorKind::Service, true),
        _ => (ErrorKind::Service, transient_code),
    };
    Verdict {
        kind,
        retryable,
        throttle_limit: (status == 429)
            .then(|| code.and_then(ThrottleLimit::from_code))
            .flatten(),
    }
}

/// The value of header `name` as text, if present and readable.
pub(crate) fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The wait a 429 or 503 asked for: `Retry-After` in seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = header_string(headers, "retry-after")?;
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Dataverse's recommended degree of parallelism (`x-ms-dop-hint`), when given and positive.
pub(crate) fn dop_hint(headers: &HeaderMap) -> Option<usize> {
    header_string(headers, "x-ms-dop-hint")?
        .trim()
        .parse()
        .ok()
        .filter(|hint| *hint > 0)
}

/// Turns a failed send into a retryable transport error without the URL (it may hold tokens).
/// A connection that could not be opened is marked so that it is retried once at most.
pub(crate) fn transport_error(error: reqwest::Error) -> Error {
    let (message, connect_failure) = if error.is_timeout() {
        (
            "the request timed out; the server or the network is slow (raise the request timeout in ClientOptions if this persists)",
            false,
        )
    } else if error.is_connect() {
        (
            "could not connect to the server; check the URL and the network",
            true,
        )
    } else if error.is_decode() || error.is_body() {
        ("the response body could not be read completely", false)
    } else {
        (
            "the request failed before a response arrived (connection reset or closed)",
            false,
        )
    };
    let transport = Error::new(ErrorKind::Transport, message).with_source(error.without_url());
    if connect_failure {
        transport.with_connect_failure()
    } else {
        transport
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn one_table_for_every_status() {
        let verdict = |status, code| {
            let v = classify(status, code);
            (v.kind, v.retryable)
        };
        assert_eq!(verdict(302, None), (ErrorKind::Protocol, false));
        assert_eq!(verdict(401, None), (ErrorKind::Auth, false));
        assert_eq!(verdict(403, Some("0x80072560")), (ErrorKind::Auth, false));
        assert_eq!(verdict(429, None), (ErrorKind::Throttled, true));
        assert_eq!(verdict(500, None), (ErrorKind::Service, false));
        assert_eq!(
            verdict(500, Some("server_error")),
            (ErrorKind::Service, true)
        );
        for status in [502, 503, 504] {
            assert_eq!(verdict(status, None), (ErrorKind::Service, true));
        }
        assert_eq!(
            verdict(404, Some("0x80060888")),
            (ErrorKind::Service, false)
        );
    }

    #[test]
    fn the_three_service_protection_codes_are_told_apart() {
        let limit = |code| classify(429, Some(code)).throttle_limit;
        assert_eq!(limit("0x80072322"), Some(ThrottleLimit::Requests));
        assert_eq!(limit("0x80072321"), Some(ThrottleLimit::ExecutionTime));
        assert_eq!(limit("0x80072326"), Some(ThrottleLimit::Concurrency));
        assert_eq!(limit("0x80060888"), None);
        assert_eq!(classify(503, Some("0x80072321")).throttle_limit, None);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        headers.insert("retry-after", HeaderValue::from_str(&soon).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }

    #[test]
    fn dop_hint_is_a_positive_integer() {
        let mut headers = HeaderMap::new();
        assert_eq!(dop_hint(&headers), None);
        headers.insert("x-ms-dop-hint", HeaderValue::from_static("4"));
        assert_eq!(dop_hint(&headers), Some(4));
        headers.insert("x-ms-dop-hint", HeaderValue::from_static("0"));
        assert_eq!(dop_hint(&headers), None);
    }
}
