//! The Dataverse Web API client every other part of the crate sends its requests through.

mod answer;
mod whoami;

pub use whoami::{WhoAmI, who_am_i};

use crate::auth::Authorizer;
use crate::connection::Connection;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::AccessToken;
use crate::transport::{
    ClientOptions, ExactUrl, Governor, HttpResponse, ThrottleStats, Transport, dop_hint,
    header_string,
};
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use url::Url;

/// The annotation carrying the label of a choice or a formatted number or date.
pub(crate) const FORMATTED_VALUE_ANNOTATION: &str = "OData.Community.Display.V1.FormattedValue";
/// The annotation naming the table a lookup points at.
pub(crate) const LOOKUP_TABLE_ANNOTATION: &str = "Microsoft.Dynamics.CRM.lookuplogicalname";
/// The annotations carrying the whole table's count with `$count=true`.
const TOTAL_COUNT_ANNOTATIONS: &str =
    "Microsoft.Dynamics.CRM.totalrecordcount,Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded";

/// The `Prefer` preferences of one read. The same value is sent on every page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Prefer {
    /// `odata.maxpagesize`.
    pub max_page_size: Option<u32>,
    /// Ask for `OData.Community.Display.V1.FormattedValue` annotations.
    pub formatted_values: bool,
    /// Ask for `Microsoft.Dynamics.CRM.lookuplogicalname` annotations.
    pub lookup_tables: bool,
    /// Ask for the `totalrecordcount` and `totalrecordcountlimitexceeded` annotations.
    pub total_count: bool,
    /// `odata.track-changes`.
    pub track_changes: bool,
}

impl Prefer {
    /// The header value, or `None` when nothing is preferred.
    fn header_value(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(size) = self.max_page_size {
            parts.push(format!("odata.maxpagesize={size}"));
        }
        let annotations: Vec<&str> = [
            (self.formatted_values, FORMATTED_VALUE_ANNOTATION),
            (self.lookup_tables, LOOKUP_TABLE_ANNOTATION),
            (self.total_count, TOTAL_COUNT_ANNOTATIONS),
        ]
        .into_iter()
        .filter_map(|(wanted, name)| wanted.then_some(name))
        .collect();
        if !annotations.is_empty() {
            parts.push(format!(
                "odata.include-annotations=\"{}\"",
                annotations.join(",")
            ));
        }
        if self.track_changes {
            parts.push("odata.track-changes".to_owned());
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

/// A successful response: its body and what the server said of the preferences.
#[derive(Debug)]
pub(crate) struct Response {
    /// The (successful) status.
    pub status: StatusCode,
    /// The (decompressed) body.
    pub body: Bytes,
    /// The `Preference-Applied` header.
    pub preference_applied: Option<String>,
}

/// Sends authenticated, retried, throttled requests to one Dataverse instance.
///
/// Each request goes through one pipeline: the retry stage of the [`ClientOptions`], then per
/// try a slot from the client's throttle governor, a token from the authorizer (whose token
/// requests have their own retries and are never retried again here), the request, and the
/// verdict on the answer. A 429 pauses every request of the client (its clones included) until
/// the server's `Retry-After` has passed, and the number of requests in flight follows the
/// server's `x-ms-dop-hint`; see [`ThrottleStats`].
///
/// It never follows redirects and refuses any absolute URL (such as a paging link) whose origin
/// is not the instance, so the bearer token is never sent anywhere else. Links are sent byte for
/// byte as the server wrote them. Cloning is cheap; clones share the governor.
#[derive(Clone)]
pub struct DataverseClient {
    connection: Arc<Connection>,
    web_api_base: Url,
    transport: Transport,
    governor: Arc<Governor>,
    authorizer: Arc<dyn Authorizer>,
}

impl fmt::Debug for DataverseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataverseClient")
            .field("instance", self.connection.instance())
            .field("authorizer", &self.authorizer)
            .field("options", self.transport.options())
            .finish_non_exhaustive()
    }
}

impl DataverseClient {
    /// A client for `connection` that takes its tokens from `authorizer`, with the default
    /// [`ClientOptions`].
    pub fn new(connection: Connection, authorizer: Arc<dyn Authorizer>) -> Result<Self> {
        Self::with_options(connection, authorizer, ClientOptions::default())
    }

    /// A client for `connection` that takes its tokens from `authorizer` and sends its requests
    /// as `options` say.
    pub fn with_options(
        connection: Connection,
        authorizer: Arc<dyn Authorizer>,
        options: ClientOptions,
    ) -> Result<Self> {
        let governor = Arc::new(Governor::new(options.max_concurrency()));
        Ok(Self {
            web_api_base: connection.web_api_base(),
            connection: Arc::new(connection),
            transport: Transport::new(options)?,
            governor,
            authorizer,
        })
    }

    /// The connection this client talks to.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The authorizer the tokens come from.
    pub fn authorizer(&self) -> &Arc<dyn Authorizer> {
        &self.authorizer
    }

    /// The options the client sends its requests with.
    pub fn options(&self) -> &ClientOptions {
        self.transport.options()
    }

    /// The throttling this client (and its clones) met so far. Take one snapshot before and one
    /// after a piece of work, and [`ThrottleStats::since`] tells what that work met.
    pub fn throttle_stats(&self) -> ThrottleStats {
        self.governor.stats()
    }

    /// How many requests the client lets be in flight now: at most
    /// [`ClientOptions::max_concurrency`] and the server's latest `x-ms-dop-hint`, halved
    /// after each execution-time or concurrency refusal and raised again by successes.
    pub fn concurrency_limit(&self) -> usize {
        self.governor.limit()
    }

    /// The absolute URL of `path_and_query`, relative to the Web API base
    /// (`accounts?$select=name` becomes `https://<org>/api/data/v9.2/accounts?$select=name`).
    pub fn web_api_url(&self, path_and_query: &str) -> Result<Url> {
        // One leading slash still means "under the Web API base"; `//host/...` stays a
        // network-path reference, so the origin check below sees (and refuses) the other host.
        let relative = match path_and_query.strip_prefix('/') {
            Some(rest) if !rest.starts_with('/') => rest,
            _ => path_and_query,
        };
        let url = self.web_api_base.join(relative).map_err(|e| {
            Error::config(format!("`{relative}` is not a valid Web API path ({e})"))
        })?;
        self.ensure_same_origin(&url, "request URL")?;
        Ok(url)
    }

    /// GETs `path_and_query` (relative to the Web API base) and decodes its JSON body.
    pub async fn get_json<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T> {
        let url = self.web_api_url(path_and_query)?;
        let response = self.get(url.as_str(), &Prefer::default()).await?;
        serde_json::from_slice(&response.body).map_err(|e| {
            Error::decode(format!(
                "the response to GET {} is not the JSON expected ({e})",
                url.path()
            ))
        })
    }

    /// GETs `link`, an absolute URL of this instance, byte for byte with the given
    /// preferences, through the pipeline.
    ///
    /// A link of another origin is refused before anything is sent. Traced as a `request`
    /// span (method and entity set: never the query, which holds paging and delta tokens) with
    /// one event per attempt.
    pub(crate) async fn get(&self, link: &str, prefer: &Prefer) -> Result<Response> {
        let target = self.exact_url(link, "link")?;
        let prefer = prefer.header_value();
        let span = tracing::debug_span!(
            "request",
            method = "GET",
            entity_set = self.entity_set(target.url())
        );
        let mut attempt = 0;
        self.transport
            .retrying(|| {
                attempt += 1;
                self.get_once(&target, prefer.as_deref(), attempt)
            })
            .instrument(span)
            .await
    }

    /// The entity set (or function) `url` addresses: its first segment under the Web API base,
    /// without keys or parameters (`contacts`, `EntityDefinitions`).
    fn entity_set<'u>(&self, url: &'u Url) -> &'u str {
        let path = url.path();
        let relative = path.strip_prefix(self.web_api_base.path()).unwrap_or(path);
        let segment = relative.split('/').next().unwrap_or_default();
        segment.split('(').next().unwrap_or_default()
    }

    /// Reads `link`, an absolute URL to send as written, and refuses it unless both the host it
    /// would be sent to and the host the URL standard reads in it are the instance's.
    pub(crate) fn exact_url(&self, link: &str, what: &str) -> Result<ExactUrl> {
        let target = ExactUrl::parse(link).map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                format!("the {what} is not an absolute http(s) URL ({e})"),
            )
        })?;
        let instance = answer::origin_of(self.connection.instance().as_url());
        if target.origin() != instance {
            return Err(self.refused(what, &target.origin()));
        }
        self.ensure_same_origin(target.url(), what)?;
        Ok(target)
    }

    /// Refuses a URL that would carry the bearer token to another origin.
    pub(crate) fn ensure_same_origin(&self, url: &Url, what: &str) -> Result<()> {
        if self.connection.instance().is_same_origin(url) {
            return Ok(());
        }
        Err(self.refused(what, &answer::origin_of(url)))
    }

    /// The error for a `what` that points at `origin`, not the instance.
    fn refused(&self, what: &str, origin: &str) -> Error {
        Error::new(
            ErrorKind::Protocol,
            format!(
                "refused to follow the {what} to `{origin}`, which is not the instance `{}`; the bearer token is only ever sent to the instance",
                answer::origin_of(self.connection.instance().as_url())
            ),
        )
    }

    /// Try number `attempt`: a slot, then [`DataverseClient::answer`], traced with the wait
    /// for the slot, the duration, the status and the size of the answer.
    async fn get_once(
        &self,
        target: &ExactUrl,
        prefer: Option<&str>,
        attempt: u32,
    ) -> Result<Response> {
        let clock = self.transport.clock();
        let queued = clock.now();
        let _slot = self.governor.acquire(clock).await;
        let sent = clock.now();
        let outcome = self.answer(target, prefer).await;
        let (status, bytes) = match &outcome {
            Ok(response) => (Some(response.status.as_u16()), response.body.len()),
            Err(error) => (error.status(), 0),
        };
        tracing::debug!(
            attempt,
            status,
            wait_ms = millis(sent.saturating_duration_since(queued)),
            duration_ms = millis(clock.now().saturating_duration_since(sent)),
            bytes,
            error = outcome
                .as_ref()
                .err()
                .map(|e| tracing::field::debug(e.kind())),
            "answer"
        );
        outcome
    }

    /// A token, the request (on 401 one refresh and one more request), and the verdict on the
    /// answer.
    async fn answer(&self, target: &ExactUrl, prefer: Option<&str>) -> Result<Response> {
        let token = self.authorizer.access_token().await?;
        let mut response = self.send(target, prefer, &token).await?;
        if response.status == StatusCode::UNAUTHORIZED {
            let fresh = self.authorizer.refresh_rejected(&token).await?;
            response = self.send(target, prefer, &fresh).await?;
            if response.status == StatusCode::UNAUTHORIZED {
                return Err(answer::refused_fresh_token(&response));
            }
        }
        if !response.status.is_success() {
            let error = answer::error_from_response(&response);
            if error.kind() == ErrorKind::Throttled {
                self.governor.throttled(
                    self.transport.clock(),
                    error.throttle_limit(),
                    error.retry_after(),
                );
            }
            return Err(error);
        }
        self.governor.succeeded();
        answer::ensure_json(target.url(), &response)?;
        Ok(Response {
            status: response.status,
            preference_applied: header_string(&response.headers, "preference-applied"),
            body: response.body,
        })
    }

    /// Sends one GET of `target` with the Web API's headers and `token`.
    async fn send(
        &self,
        target: &ExactUrl,
        prefer: Option<&str>,
        token: &AccessToken,
    ) -> Result<HttpResponse> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert("OData-MaxVersion", HeaderValue::from_static("4.0"));
        headers.insert("OData-Version", HeaderValue::from_static("4.0"));
        headers.insert(header::AUTHORIZATION, bearer(token)?);
        if let Some(prefer) = prefer {
            let value = HeaderValue::from_str(prefer)
                .map_err(|_| Error::config("the Prefer header is not a valid header value"))?;
            headers.insert("Prefer", value);
        }
        let response = self.transport.get_exact(target, headers).await?;
        if let Some(hint) = dop_hint(&response.headers) {
            self.governor.observe_dop_hint(hint);
        }
        Ok(response)
    }
}

/// Whole milliseconds, for trace fields.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The `Authorization` header of `token`, marked sensitive (left out of debug output).
fn bearer(token: &AccessToken) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.secret())).map_err(|_| {
        Error::auth(
            "the access token holds characters a header cannot carry; check the authorizer that issued it",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_joins_preferences_with_commas() {
        let prefer = Prefer {
            max_page_size: Some(5000),
            formatted_values: true,
            lookup_tables: true,
            total_count: false,
            track_changes: true,
        };
        assert_eq!(
            prefer.header_value().unwrap(),
            "odata.maxpagesize=5000,odata.include-annotations=\"OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname\",odata.track-changes"
        );
        let counted = Prefer {
            max_page_size: Some(10),
            total_count: true,
            ..Prefer::default()
        };
        assert_eq!(
            counted.header_value().unwrap(),
            "odata.maxpagesize=10,odata.include-annotations=\"Microsoft.Dynamics.CRM.totalrecordcount,Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded\""
        );
        assert_eq!(Prefer::default().header_value(), None);
    }
}
