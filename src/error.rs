//! The one error type of the crate.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in the terms a caller acts on. Serialized in snake_case (`"resync_required"`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The configuration is invalid (a bad URL, a missing setting). Fix the input.
    Config,
    /// Authorization failed or is missing: re-authorize the connection or fix its credentials.
    Auth,
    /// The request did not get an answer (connection refused or reset, timeout).
    Transport,
    /// Dataverse service protection limits were hit (HTTP 429).
    Throttled,
    /// Dataverse or Entra ID answered with an error.
    Service,
    /// The server broke the protocol in a way the crate refuses to follow (a redirect, a
    /// paging link to another host).
    Protocol,
    /// A response could not be decoded.
    Decode,
    /// A field mapping is invalid or a value could not be converted.
    Mapping,
    /// The host's record sink failed.
    Sink,
    /// The host's token or checkpoint store failed ([`TokenStore`](crate::TokenStore),
    /// [`CheckpointStore`](crate::CheckpointStore)).
    Store,
    /// The host's [`TargetLookup`](crate::TargetLookup) failed.
    Lookup,
    /// The change-tracking token is no longer valid: a full resync is required.
    ResyncRequired,
}

/// Which Dataverse service protection limit refused a request (HTTP 429).
///
/// Limits are counted per user over a 5-minute sliding window.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleLimit {
    /// Too many requests (`0x80072322`).
    Requests,
    /// Too much combined execution time (`0x80072321`).
    ExecutionTime,
    /// Too many concurrent requests (`0x80072326`).
    Concurrency,
}

impl ThrottleLimit {
    /// The limit a Dataverse error code names, if it names one.
    pub fn from_code(code: &str) -> Option<Self> {
        [Self::Requests, Self::ExecutionTime, Self::Concurrency]
            .into_iter()
            .find(|limit| limit.code().eq_ignore_ascii_case(code))
    }

    /// The Dataverse error code of this limit.
    pub fn code(self) -> &'static str {
        match self {
            Self::Requests => "0x80072322",
            Self::ExecutionTime => "0x80072321",
            Self::Concurrency => "0x80072326",
        }
    }
}

impl fmt::Display for ThrottleLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Requests => "the number of requests",
            Self::ExecutionTime => "the combined execution time",
            Self::Concurrency => "the number of concurrent requests",
        })
    }
}

/// The error returned by every fallible call of this crate, and by the host's implementations
/// of its traits.
///
/// `Display` is one sentence a person can act on; details are available through the
/// accessors. No secret, bearer token or paging token ever appears in it.
///
/// Reports carry it ([`SyncReport::error`](crate::SyncReport::error),
/// [`ChainOutcome::Refused`](crate::ChainOutcome::Refused)), so it is `Clone` (clones share
/// the source) and serializes as what a host decides on: `kind`, `message`, `retryable`,
/// and when known `exhausted`, `retry_after` (seconds), `status`, `service_code`,
/// `service_message`, `request_id` and `throttle_limit`. The source is not serialized; an
/// error read back from JSON has none. Two errors are equal when they say the same, sources
/// aside.
#[derive(Clone, Serialize, Deserialize)]
#[serde(into = "Summary", from = "Summary")]
pub struct Error {
    inner: Box<Inner>,
}

/// The details, boxed so `Result<T, Error>` stays one pointer wide.
#[derive(Debug, Clone)]
struct Inner {
    kind: ErrorKind,
    message: String,
    status: Option<u16>,
    service_code: Option<String>,
    service_message: Option<String>,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    retryable: bool,
    /// A retry stage already retried this error as far as its policy allows.
    exhausted: bool,
    /// The connection could not be opened (refused, DNS): retried at most once.
    connect_failure: bool,
    throttle_limit: Option<ThrottleLimit>,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with a one-sentence `message`.
    ///
    /// For host implementations of the crate's traits: [`ErrorKind::Sink`] from a
    /// [`RecordSink`](crate::RecordSink), [`ErrorKind::Store`] from a
    /// [`TokenStore`](crate::TokenStore) or [`CheckpointStore`](crate::CheckpointStore),
    /// [`ErrorKind::Lookup`] from a [`TargetLookup`](crate::TargetLookup). Say what failed and
    /// what to do, attach the cause with [`Error::with_source`], and mark an outage worth
    /// retrying later with [`Error::with_retryable`].
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                status: None,
                service_code: None,
                service_message: None,
                request_id: None,
                retry_after: None,
                retryable: matches!(kind, ErrorKind::Transport | ErrorKind::Throttled),
                exhausted: false,
                connect_failure: false,
                throttle_limit: None,
                source: None,
            }),
        }
    }

    /// A configuration error.
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// An authorization error.
    pub(crate) fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, message)
    }

    /// A decode error.
    pub(crate) fn decode(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Decode, message)
    }

    /// Attaches the HTTP status.
    pub(crate) fn with_status(self, status: u16) -> Self {
        self.with_status_opt(Some(status))
    }

    fn with_status_opt(mut self, status: Option<u16>) -> Self {
        self.inner.status = status;
        self
    }

    /// Attaches the service's own error code and message.
    pub(crate) fn with_service_error(
        mut self,
        code: Option<String>,
        message: Option<String>,
    ) -> Self {
        self.inner.service_code = code.filter(|c| !c.is_empty());
        self.inner.service_message = message.filter(|m| !m.is_empty());
        self
    }

    /// Attaches the `x-ms-service-request-id` (or Entra `trace_id`) for support.
    pub(crate) fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.inner.request_id = request_id;
        self
    }

    /// Attaches the wait the server asked for.
    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.inner.retry_after = retry_after;
        self
    }

    /// Marks the error as worth retrying later (or not).
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.inner.retryable = retryable;
        self
    }

    /// Marks the error as given up on by a retry stage: no outer stage retries it again.
    pub(crate) fn exhausted(mut self) -> Self {
        self.inner.exhausted = true;
        self
    }

    /// Marks the error as a connection that could not be opened (retried at most once).
    pub(crate) fn with_connect_failure(mut self) -> Self {
        self.inner.connect_failure = true;
        self
    }

    /// Attaches the service protection limit that refused the request.
    pub(crate) fn with_throttle_limit(mut self, limit: Option<ThrottleLimit>) -> Self {
        self.inner.throttle_limit = limit;
        self
    }

    /// Appends a clause to the message, as in "Dataverse is unavailable (gave up after 5 attempts)".
    pub(crate) fn with_context(mut self, context: impl std::fmt::Display) -> Self {
        self.inner.message = format!("{} ({context})", self.inner.message);
        self
    }

    /// Attaches the underlying cause (reachable through `std::error::Error::source`).
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.inner.source = Some(Arc::from(source.into()));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether sending the same request again later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.inner.retryable
    }

    /// Whether a retry stage of the crate already retried this error as often as its policy
    /// allows (the message says how many attempts were made). Retrying it at once is pointless;
    /// retrying later (the next scheduled run) may still succeed when it is retryable.
    pub fn is_exhausted(&self) -> bool {
        self.inner.exhausted
    }

    /// Whether the connection could not be opened at all (refused, unknown host).
    pub(crate) fn is_connect_failure(&self) -> bool {
        self.inner.connect_failure
    }

    /// Which service protection limit refused the request, for a
    /// [`Throttled`](ErrorKind::Throttled) error from Dataverse that named one.
    pub fn throttle_limit(&self) -> Option<ThrottleLimit> {
        self.inner.throttle_limit
    }

    /// How long the server asked the caller to wait before trying again (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The HTTP status of the failed response, if there was one.
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// The Dataverse error code (such as `0x80060888`) or Entra error (such as `invalid_grant`).
    pub fn service_code(&self) -> Option<&str> {
        self.inner.service_code.as_deref()
    }

    /// The message the service gave with its error.
    pub fn service_message(&self) -> Option<&str> {
        self.inner.service_message.as_deref()
    }

    /// The service's request id (`x-ms-service-request-id`, or Entra's `trace_id`), for support.
    pub fn request_id(&self) -> Option<&str> {
        self.inner.request_id.as_deref()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        debug
            .field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(status) = self.inner.status {
            debug.field("status", &status);
        }
        if let Some(code) = &self.inner.service_code {
            debug.field("service_code", code);
        }
        if let Some(message) = &self.inner.service_message {
            debug.field("service_message", message);
        }
        if let Some(request_id) = &self.inner.request_id {
            debug.field("request_id", request_id);
        }
        if let Some(retry_after) = self.inner.retry_after {
            debug.field("retry_after", &retry_after);
        }
        if let Some(limit) = self.inner.throttle_limit {
            debug.field("throttle_limit", &limit);
        }
        if self.inner.exhausted {
            debug.field("exhausted", &true);
        }
        if let Some(source) = &self.inner.source {
            debug.field("source", &source.to_string());
        }
        debug.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let source = self.inner.source.as_deref()?;
        Some(source)
    }
}

impl PartialEq for Error {
    /// Equal when the serialized forms are: kind, message and details, sources aside.
    fn eq(&self, other: &Self) -> bool {
        Summary::from(self.clone()) == Summary::from(other.clone())
    }
}

/// The serialized form of an [`Error`]: what a host decides "retry later" or "page a person"
/// on, in an activity log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    kind: ErrorKind,
    message: String,
    retryable: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    exhausted: bool,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_after: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    throttle_limit: Option<ThrottleLimit>,
}

impl From<Error> for Summary {
    fn from(error: Error) -> Self {
        let inner = *error.inner;
        Self {
            kind: inner.kind,
            message: inner.message,
            retryable: inner.retryable,
            exhausted: inner.exhausted,
            retry_after: inner.retry_after.map(|wait| wait.as_secs_f64()),
            status: inner.status,
            service_code: inner.service_code,
            service_message: inner.service_message,
            request_id: inner.request_id,
            throttle_limit: inner.throttle_limit,
        }
    }
}

impl From<Summary> for Error {
    fn from(summary: Summary) -> Self {
        let mut error = Error::new(summary.kind, summary.message)
            .with_retryable(summary.retryable)
            .with_status_opt(summary.status)
            .with_service_error(summary.service_code, summary.service_message)
            .with_request_id(summary.request_id)
            .with_retry_after(
                summary
                    .retry_after
                    .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok()),
            )
            .with_throttle_limit(summary.throttle_limit);
        error.inner.exhausted = summary.exhausted;
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_message_and_does_not_repeat_the_source() {
        let io = std::io::Error::other("socket closed");
        let error = Error::new(ErrorKind::Transport, "the instance did not answer").with_source(io);
        assert_eq!(error.to_string(), "the instance did not answer");
        assert_eq!(
            std::error::Error::source(&error)
                .map(|s| s.to_string())
                .as_deref(),
            Some("socket closed")
        );
    }

    #[test]
    fn an_error_read_back_from_its_json_says_the_same_without_its_source() {
        let error = Error::new(ErrorKind::Service, "Dataverse is unavailable")
            .with_status(503)
            .with_service_error(Some("0x80040216".into()), Some("busy".into()))
            .with_request_id(Some("req-1".into()))
            .with_retry_after(Some(Duration::from_millis(1500)))
            .with_retryable(true)
            .exhausted()
            .with_source(std::io::Error::other("socket closed"));

        let json = serde_json::to_value(&error).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "service", "message": "Dataverse is unavailable", "retryable": true,
                "exhausted": true, "retry_after": 1.5, "status": 503,
                "service_code": "0x80040216", "service_message": "busy", "request_id": "req-1"
            })
        );
        let back: Error = serde_json::from_value(json).unwrap();
        assert_eq!(back, error);
        assert!(back.is_retryable() && back.is_exhausted());
        assert_eq!(back.retry_after(), Some(Duration::from_millis(1500)));
        assert!(std::error::Error::source(&back).is_none());
        assert_eq!(
            std::error::Error::source(&error.clone()).map(|s| s.to_string()),
            Some("socket closed".to_owned())
        );
    }

    #[test]
    fn transport_and_throttling_are_retryable_by_default() {
        assert!(Error::new(ErrorKind::Transport, "x").is_retryable());
        assert!(Error::new(ErrorKind::Throttled, "x").is_retryable());
        assert!(!Error::config("x").is_retryable());
        assert!(!Error::auth("x").is_retryable());
    }
}
