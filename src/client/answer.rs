//! What a Dataverse answer says: error bodies (Dataverse JSON, an HTML gateway page, empty,
//! truncated) turned into typed errors with a message that says what to do.

use crate::error::{Error, ErrorKind};
use crate::transport::{HttpResponse, classify, header_string, retry_after};
use reqwest::header::{self, HeaderMap};
use url::Url;

/// The header Dataverse puts its request id in.
const REQUEST_ID_HEADER: &str = "x-ms-service-request-id";

/// The scheme, host and port of `url`, without path or query (which may hold paging tokens).
pub(super) fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Turns a non-success answer into a typed error: status, Dataverse code and message, request
/// id and `Retry-After`, with a message that says what to do.
pub(super) fn error_from_response(response: &HttpResponse) -> Error {
    let status = response.status;
    let headers = &response.headers;
    let body = Body::read(headers, &response.body);
    let verdict = classify(status.as_u16(), body.code.as_deref());
    let reason = status.canonical_reason().unwrap_or("error");
    let code_part = body
        .code
        .as_deref()
        .map(|c| format!(", code {c}"))
        .unwrap_or_default();
    let status_part = format!("HTTP {} {reason}{code_part}", status.as_u16());
    let detail = body.detail();
    let message = match (verdict.kind, status.as_u16()) {
        (ErrorKind::Protocol, _) => format!(
            "the instance answered with a redirect ({status_part}) to `{}`; redirects are never followed so the token stays with the instance; check the instance URL",
            redirect_origin(headers)
        ),
        (ErrorKind::Auth, 401) => format!(
            "the instance refused the access token ({status_part}); re-authorize the connection"
        ),
        (ErrorKind::Auth, _) => format!(
            "the signed-in user lacks access ({status_part}){detail}; give the user or application user a security role in this environment"
        ),
        (ErrorKind::Throttled, _) => {
            let limit = verdict
                .throttle_limit
                .map(|l| format!(" on {l}"))
                .unwrap_or_default();
            format!(
                "Dataverse service protection limits were hit{limit} ({status_part}); slow down and retry later"
            )
        }
        (_, 502..=504) => {
            format!("Dataverse is temporarily unavailable ({status_part}){detail}")
        }
        _ => format!("Dataverse refused the request ({status_part}){detail}"),
    };
    Error::new(verdict.kind, message)
        .with_status(status.as_u16())
        .with_service_error(body.code, body.message)
        .with_request_id(header_string(headers, REQUEST_ID_HEADER))
        .with_retry_after(retry_after(headers))
        .with_retryable(verdict.retryable)
        .with_throttle_limit(verdict.throttle_limit)
}

/// The error for a second 401, after a freshly refreshed token.
pub(super) fn refused_fresh_token(response: &HttpResponse) -> Error {
    let details = error_from_response(response);
    Error::auth(
        "the instance refused a freshly refreshed access token; re-authorize the connection (the user or application user may have lost access)",
    )
    .with_status(401)
    .with_service_error(
        details.service_code().map(str::to_owned),
        details.service_message().map(str::to_owned),
    )
    .with_request_id(details.request_id().map(str::to_owned))
}

/// Refuses a successful answer whose body is an HTML page (a proxy, a sign-in page) rather
/// than the JSON every Web API answer holds.
pub(super) fn ensure_json(url: &Url, response: &HttpResponse) -> crate::error::Result<()> {
    if !is_html(&response.headers, &response.body) {
        return Ok(());
    }
    let title = html_title(&String::from_utf8_lossy(&response.body))
        .map(|t| format!(" titled \"{t}\""))
        .unwrap_or_default();
    Err(Error::decode(format!(
        "GET {} answered HTTP {} with an HTML page{title} instead of JSON; check the instance URL (a proxy, firewall or sign-in page may be answering instead of Dataverse)",
        url.path(),
        response.status.as_u16()
    ))
    .with_status(response.status.as_u16()))
}

fn redirect_origin(headers: &HeaderMap) -> String {
    headers
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| Url::parse(l).ok())
        .map(|u| origin_of(&u))
        .unwrap_or_else(|| "an unknown location".to_owned())
}

/// What an error body holds: Dataverse's code and message, or a note on an unusual body.
struct Body {
    code: Option<String>,
    message: Option<String>,
    note: Option<&'static str>,
}

impl Body {
    /// Reads a Dataverse JSON error (`{"error":{"code","message"}}`), an HTML gateway page, an
    /// empty body, or something else.
    fn read(headers: &HeaderMap, body: &[u8]) -> Self {
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
        let note = |note| Self {
            code: None,
            message: None,
            note: Some(note),
        };
        if trimmed.is_empty() {
            return note("empty body");
        }
        if let Ok(envelope) = serde_json::from_str::<Envelope>(trimmed) {
            return Self {
                code: envelope.error.code.filter(|c| !c.is_empty()),
                message: envelope.error.message,
                note: None,
            };
        }
        if is_html(headers, trimmed.as_bytes()) {
            return Self {
                message: html_title(trimmed),
                ..note("an HTML page from a gateway")
            };
        }
        if trimmed.starts_with('{') {
            return note("a malformed or truncated JSON body");
        }
        note("a body that is not a Dataverse error")
    }

    /// `: <message>` or ` (<note>)`, for the error message.
    fn detail(&self) -> String {
        self.message
            .as_deref()
            .map(|m| format!(": {m}"))
            .or(self.note.map(|n| format!(" ({n})")))
            .unwrap_or_default()
    }
}

/// Whether a body is an HTML page: by its content type, or by its first character (`<`; a JSON
/// body starts with `{`), without reading the rest.
fn is_html(headers: &HeaderMap, body: &[u8]) -> bool {
    header_string(headers, "content-type").is_some_and(|t| t.contains("html"))
        || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// The text of an HTML page's `<title>`, if any.
fn html_title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    let title = html[start..end].trim();
    (!title.is_empty()).then(|| title.to_owned())
}
