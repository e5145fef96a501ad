//! The HTTP pipeline every request of the crate goes through, Web API and token endpoint alike:
//! no-redirect clients built from one [`ClientOptions`], one retry stage, one table of what an
//! answer means, and the throttle governor. Nothing here knows about authorization or Dataverse
//! records.

mod clock;
mod exact;
mod governor;
mod proxy;
mod retry;
mod status;

#[cfg(feature = "testkit")]
pub use clock::VirtualClock;
pub use clock::{Clock, SystemClock};
pub use governor::ThrottleStats;
pub use retry::RetryPolicy;

pub(crate) use exact::ExactUrl;
pub(crate) use governor::Governor;
pub(crate) use status::{classify, dop_hint, header_string, retry_after};

use crate::error::{Error, Result};
use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, redirect};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The time allowed for one whole request, unless configured otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The time allowed to open a connection, unless configured otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The `User-Agent` header sent unless configured otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("d365-connector/", env!("CARGO_PKG_VERSION"));
/// The most requests one client has in flight, unless configured otherwise (Dataverse allows 52
/// per user; its `x-ms-dop-hint` usually asks for fewer, and the client follows it).
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;

/// How a client sends its requests: timeouts, user agent, retries, clock and concurrency.
///
/// One value configures both the [`DataverseClient`](crate::DataverseClient) and the
/// authorizer's token requests. Every setting has a documented default.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    request_timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    max_concurrency: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
        }
    }
}

impl ClientOptions {
    /// Sets the time allowed for one whole request. Default: [`DEFAULT_REQUEST_TIMEOUT`].
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the time allowed to open a connection. Default: [`DEFAULT_CONNECT_TIMEOUT`].
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the `User-Agent` header. Default: [`DEFAULT_USER_AGENT`].
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Sets how failed requests are retried. Default: [`RetryPolicy::default`].
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the clock that retries, throttling pauses and token expiry use (the testkit's
    /// `VirtualClock` in tests). Default: [`SystemClock`].
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the most requests a client has in flight (at least 1); the server's
    /// `x-ms-dop-hint` may lower it. Default: [`DEFAULT_MAX_CONCURRENCY`].
    #[must_use]
    pub fn with_max_concurrency(mut self, max: usize) -> Self {
        self.max_concurrency = max.max(1);
        self
    }

    /// The time allowed for one whole request.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The time allowed to open a connection.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The `User-Agent` header.
    pub fn user_agent(&self) -> &str {
        &self.user_agent
    }

    /// How failed requests are retried.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The clock in use.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The most requests a client has in flight.
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }
}

/// The no-redirect HTTP clients and the options they were built with. Cloning is cheap.
///
/// Two clients, configured alike from the same options: reqwest for requests the crate builds
/// itself (the token endpoint's), and one that sends a GET's URL byte for byte (the Web API's,
/// whose next and delta links must be followed exactly as written; see [`ExactUrl`]). Both
/// answers come back as one [`HttpResponse`] and failures as the same transport errors.
#[derive(Clone)]
pub(crate) struct Transport {
    http: reqwest::Client,
    exact: exact::ExactClient,
    options: Arc<ClientOptions>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// An answer read whole: status, headers and the (decompressed) body.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Transport {
    /// Builds the HTTP clients: no redirects (a redirect must never carry a token elsewhere),
    /// the options' timeouts and user agent, gzip.
    pub fn new(options: ClientOptions) -> Result<Self> {
        if options.request_timeout.is_zero() || options.connect_timeout.is_zero() {
            return Err(Error::config(
                "the request and connect timeouts of the client options must be longer than zero",
            ));
        }
        let http = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .timeout(options.request_timeout)
            .connect_timeout(options.connect_timeout)
            .user_agent(options.user_agent.as_str())
            .gzip(true)
            .build()
            .map_err(|e| {
                Error::config("the HTTP client could not be built").with_source(e.without_url())
            })?;
        Ok(Self {
            http,
            exact: exact::ExactClient::new(&options)?,
            options: Arc::new(options),
        })
    }

    /// The options the transport was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The clock of the options.
    pub fn clock(&self) -> &dyn Clock {
        self.options.clock.as_ref()
    }

    /// The underlying client, to build requests with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `request` and reads its whole body. A failure before the body is complete is a
    /// [`Transport`](crate::ErrorKind::Transport) error.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<HttpResponse> {
        let response = request.send().await.map_err(status::transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(status::transport_error)?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// GETs `target` byte for byte with `headers` and reads its whole body. A failure before
    /// the body is complete is a [`Transport`](crate::ErrorKind::Transport) error.
    pub async fn get_exact(&self, target: &ExactUrl, headers: HeaderMap) -> Result<HttpResponse> {
        self.exact.get(target, headers).await
    }

    /// Runs `attempt` under the retry policy: the one retry stage of a request.
    pub async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.options.retry.run(self.clock(), attempt).await
    }
}
