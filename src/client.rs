//! The Dataverse Web API client every other part of the crate sends its requests through.

use crate::auth::Authorizer;
use crate::connection::Connection;
use crate::error::{Error, ErrorKind, Result};
use crate::retry::RetryPolicy;
use crate::secret::AccessToken;
use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, redirect};
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// The header Dataverse puts its request id in.
const REQUEST_ID_HEADER: &str = "x-ms-service-request-id";
/// The annotation carrying the label of a choice or a formatted number or date.
pub(crate) const FORMATTED_VALUE_ANNOTATION: &str = "OData.Community.Display.V1.FormattedValue";
/// The annotation naming the table a lookup points at.
pub(crate) const LOOKUP_TABLE_ANNOTATION: &str = "Microsoft.Dynamics.CRM.lookuplogicalname";

/// The `Prefer` preferences of one read. The same value is sent on every page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Prefer {
    /// `odata.maxpagesize`.
    pub max_page_size: Option<u32>,
    /// Ask for `OData.Community.Display.V1.FormattedValue` annotations.
    pub formatted_values: bool,
    /// Ask for `Microsoft.Dynamics.CRM.lookuplogicalname` annotations.
    pub lookup_tables: bool,
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
    /// The (decompressed) body.
    pub body: Bytes,
    /// The `Preference-Applied` header.
    pub preference_applied: Option<String>,
}

/// Sends authenticated, retried requests to one Dataverse instance.
///
/// It never follows redirects and refuses any absolute URL (such as a paging link) whose origin
/// is not the instance, so the bearer token is never sent anywhere else. Cloning is cheap.
#[derive(Clone)]
pub struct DataverseClient {
    connection: Arc<Connection>,
    web_api_base: Url,
    http: reqwest::Client,
    authorizer: Arc<dyn Authorizer>,
    retry: RetryPolicy,
}

impl fmt::Debug for DataverseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataverseClient")
            .field("instance", self.connection.instance())
            .field("authorizer", &self.authorizer)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl DataverseClient {
    /// A client for `connection` that takes its tokens from `authorizer`, with the default
    /// [`RetryPolicy`].
    pub fn new(connection: Connection, authorizer: Arc<dyn Authorizer>) -> Result<Self> {
        let http = http_client(&connection)?;
        Ok(Self {
            web_api_base: connection.web_api_base(),
            connection: Arc::new(connection),
            http,
            authorizer,
            retry: RetryPolicy::default(),
        })
    }

    /// Replaces the retry policy.
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The connection this client talks to.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The authorizer the tokens come from.
    pub fn authorizer(&self) -> &Arc<dyn Authorizer> {
        &self.authorizer
    }

    /// The retry policy in use.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
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
        let response = self.get(&url, &Prefer::default()).await?;
        serde_json::from_slice(&response.body).map_err(|e| {
            Error::decode(format!(
                "the response to GET {} is not the JSON expected ({e})",
                url.path()
            ))
        })
    }

    /// GETs an absolute `url` of this instance with the given preferences, retrying per policy.
    ///
    /// A URL of another origin is refused before anything is sent.
    pub(crate) async fn get(&self, url: &Url, prefer: &Prefer) -> Result<Response> {
        self.ensure_same_origin(url, "link")?;
        let prefer = prefer.header_value();
        self.retry
            .run(|| self.get_once(url, prefer.as_deref()))
            .await
    }

    /// Refuses a URL that would carry the bearer token to another origin.
    pub(crate) fn ensure_same_origin(&self, url: &Url, what: &str) -> Result<()> {
        if self.connection.instance().is_same_origin(url) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "refused to follow the {what} to `{}`, which is not the instance `{}`; the bearer token is only ever sent to the instance",
                origin_of(url),
                self.connection.instance().host()
            ),
        ))
    }

    /// One attempt: a token, the request, and on 401 one refresh and one more request.
    async fn get_once(&self, url: &Url, prefer: Option<&str>) -> Result<Response> {
        let token = self.authorizer.access_token().await?;
        let response = self.send(url, prefer, &token).await?;
        let response = if response.status() == StatusCode::UNAUTHORIZED {
            let fresh = self.authorizer.refresh_rejected(&token).await?;
            let retried = self.send(url, prefer, &fresh).await?;
            if retried.status() == StatusCode::UNAUTHORIZED {
                let details = error_from_response(retried).await;
                return Err(Error::auth(
                    "the instance refused a freshly refreshed access token; re-authorize the connection (the user or application user may have lost access)",
                )
                .with_status(401)
                .with_service_error(
                    details.service_code().map(str::to_owned),
                    details.service_message().map(str::to_owned),
                )
                .with_request_id(details.request_id().map(str::to_owned)));
            }
            retried
        } else {
            response
        };
        if !response.status().is_success() {
            return Err(error_from_response(response).await);
        }
        let preference_applied = header_string(response.headers(), "preference-applied");
        let body = response.bytes().await.map_err(transport_error)?;
        Ok(Response {
            body,
            preference_applied,
        })
    }

    async fn send(
        &self,
        url: &Url,
        prefer: Option<&str>,
        token: &AccessToken,
    ) -> Result<reqwest::Response> {
        let mut request = self
            .http
            .get(url.clone())
            .header(header::ACCEPT, "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0")
            .bearer_auth(token.secret());
        if let Some(prefer) = prefer {
            request = request.header("Prefer", prefer);
        }
        request.send().await.map_err(transport_error)
    }
}

/// The HTTP client every request of a connection goes through: no redirects, the
/// connection's timeouts and user agent, gzip.
pub(crate) fn http_client(connection: &Connection) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .timeout(connection.request_timeout())
        .connect_timeout(connection.connect_timeout())
        .user_agent(connection.user_agent())
        .gzip(true)
        .build()
        .map_err(|e| {
            Error::config("the HTTP client could not be built").with_source(e.without_url())
        })
}

/// Turns a failed send into a retryable transport error without the URL (it may hold tokens).
pub(crate) fn transport_error(error: reqwest::Error) -> Error {
    let message = if error.is_timeout() {
        "the request timed out; the instance or the network is slow (raise the connection's request timeout if this persists)"
    } else if error.is_connect() {
        "could not connect to the server; check the URL and the network"
    } else if error.is_decode() || error.is_body() {
        "the response body could not be read completely"
    } else {
        "the request failed before a response arrived (connection reset or closed)"
    };
    Error::new(ErrorKind::Transport, message).with_source(error.without_url())
}

/// The scheme, host and port of `url`, without path or query (which may hold paging tokens).
fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
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

/// Turns a non-success response into a typed error: status, Dataverse code and message,
/// request id and `Retry-After`, with a message that says what to do.
async fn error_from_response(response: reqwest::Response) -> Error {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    error_from_parts(status, &headers, &body)
}

fn error_from_parts(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let request_id = header_string(headers, REQUEST_ID_HEADER);
    let (code, service_message, body_note) = describe_body(headers, body);
    let reason = status.canonical_reason().unwrap_or("error");
    let code_part = code
        .as_deref()
        .map(|c| format!(", code {c}"))
        .unwrap_or_default();
    let detail = service_message
        .as_deref()
        .map(|m| format!(": {m}"))
        .or(body_note.map(|n| format!(" ({n})")))
        .unwrap_or_default();
    let status_part = format!("HTTP {} {reason}{code_part}", status.as_u16());
    let (kind, message, retryable) = match status.as_u16() {
        300..=399 => (
            ErrorKind::Protocol,
            format!(
                "the instance answered with a redirect ({status_part}) to `{}`; redirects are never followed so the token stays with the instance; check the instance URL",
                headers
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| Url::parse(l).ok())
                    .map(|u| origin_of(&u))
                    .unwrap_or_else(|| "an unknown location".to_owned())
            ),
            false,
        ),
        401 => (
            ErrorKind::Auth,
            format!(
                "the instance refused the access token ({status_part}); re-authorize the connection"
            ),
            false,
        ),
        403 => (
            ErrorKind::Auth,
            format!(
                "the signed-in user lacks access ({status_part}){detail}; give the user or application user a security role in this environment"
            ),
            false,
        ),
        429 => (
            ErrorKind::Throttled,
            format!(
                "Dataverse service protection limits were hit ({status_part}); slow down and retry later"
            ),
            true,
        ),
        502..=504 => (
            ErrorKind::Service,
            format!("Dataverse is temporarily unavailable ({status_part}){detail}"),
            true,
        ),
        _ => (
            ErrorKind::Service,
            format!("Dataverse refused the request ({status_part}){detail}"),
            false,
        ),
    };
    Error::new(kind, message)
        .with_status(status.as_u16())
        .with_service_error(code, service_message)
        .with_request_id(request_id)
        .with_retry_after(retry_after(headers))
        .with_retryable(retryable)
}

/// Reads an error body: Dataverse JSON (`{"error":{"code","message"}}`), an HTML gateway page,
/// an empty body, or something else. Returns (code, message, note on an unusual body).
fn describe_body(
    headers: &HeaderMap,
    body: &[u8],
) -> (Option<String>, Option<String>, Option<&'static str>) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return (None, None, Some("empty body"));
    }
    if let Ok(envelope) = serde_json::from_str::<Envelope>(trimmed) {
        return (envelope.error.code, envelope.error.message, None);
    }
    let is_html = header_string(headers, "content-type").is_some_and(|t| t.contains("html"))
        || trimmed.starts_with('<');
    if is_html {
        let title = html_title(trimmed);
        return (None, title, Some("an HTML page from a gateway"));
    }
    if trimmed.starts_with('{') {
        return (None, None, Some("a malformed or truncated JSON body"));
    }
    (None, None, Some("a body that is not a Dataverse error"))
}

/// The text of an HTML page's `<title>`, if any.
fn html_title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    let title = html[start..end].trim();
    (!title.is_empty()).then(|| title.to_owned())
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
            track_changes: true,
        };
        assert_eq!(
            prefer.header_value().unwrap(),
            "odata.maxpagesize=5000,odata.include-annotations=\"OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname\",odata.track-changes"
        );
        assert_eq!(Prefer::default().header_value(), None);
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
}
