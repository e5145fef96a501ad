//! URLs sent byte for byte.
//!
//! reqwest turns every URL into a `url::Url`, whose parser percent-encodes `'` in the query of
//! an http(s) URL: `contains(name,'x')` would go out as `contains(name,%27x%27)`. A next or
//! delta link must be followed exactly as the server wrote it, so the Web API's GETs go through
//! the hyper-util client reqwest itself is built on, which writes the request target as given.

use super::proxy::ProxyConnector;
use super::status::{SendFailure, send_error};
use super::{ClientOptions, HttpResponse};
use crate::error::{Error, Result};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::Uri;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::io::Read;
use std::time::Duration;
use url::Url;

/// An absolute http(s) URL to GET, kept as written.
#[derive(Clone)]
pub(crate) struct ExactUrl {
    /// What is sent: the text as written, when that is a valid HTTP request target.
    uri: Uri,
    /// The same text as the URL standard reads it.
    url: Url,
}

impl ExactUrl {
    /// Reads `text`, an absolute http(s) URL. It is sent exactly as written when it is a valid
    /// HTTP request target; text that cannot go on a request line (a raw space, a non-ASCII
    /// character, a `\`) is sent as the URL standard reads and percent-encodes it. The error
    /// says why the text is no such URL, without repeating it (it may hold tokens).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let url = Url::parse(text).map_err(|e| e.to_string())?;
        let uri = match text.parse::<Uri>() {
            Ok(uri) if is_absolute(&uri) => uri,
            _ => url
                .as_str()
                .parse::<Uri>()
                .ok()
                .filter(is_absolute)
                .ok_or("it cannot be written as an HTTP request target")?,
        };
        Ok(Self { uri, url })
    }

    /// The URL as the URL standard reads it.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The scheme, host and port the request goes to (`https://host`, the port only when it is
    /// not the scheme's default), in lower case: what a connection is opened to.
    pub fn origin(&self) -> String {
        let scheme = self
            .uri
            .scheme_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let host = self.uri.host().unwrap_or_default().to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        };
        match self.uri.port_u16() {
            Some(port) if Some(port) != default_port => format!("{scheme}://{host}:{port}"),
            _ => format!("{scheme}://{host}"),
        }
    }
}

impl std::fmt::Debug for ExactUrl {
    /// Leaves out the query, which holds paging and delta tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactUrl")
            .field("origin", &self.origin())
            .field("path", &self.uri.path())
            .finish_non_exhaustive()
    }
}

/// Whether `uri` names a scheme and a host (a request target in absolute form).
fn is_absolute(uri: &Uri) -> bool {
    uri.scheme().is_some() && uri.host().is_some_and(|h| !h.is_empty())
}

/// The client that sends GETs of [`ExactUrl`]s as written: hyper-util's, over rustls with the
/// webpki roots and the ring provider, through the environment's proxies (as reqwest's is
/// built), with the options' timeouts and user agent, gzip, and no redirects (hyper never
/// follows one).
#[derive(Clone)]
pub(super) struct ExactClient {
    client: Client<HttpsConnector<ProxyConnector>, Empty<Bytes>>,
    user_agent: HeaderValue,
    request_timeout: Duration,
}

impl ExactClient {
    /// Builds the client from `options`.
    pub fn new(options: &ClientOptions) -> Result<Self> {
        let user_agent = HeaderValue::from_str(options.user_agent()).map_err(|_| {
            Error::config(
                "the user agent of the client options is not a valid header value; use printable ASCII",
            )
        })?;
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(options.connect_timeout()));
        let connector = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| Error::config("the TLS configuration could not be built").with_source(e))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(ProxyConnector::from_system(tcp));
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            client,
            user_agent,
            request_timeout: options.request_timeout(),
        })
    }

    /// GETs `target` with `headers` (plus the user agent and `Accept-Encoding: gzip`) and reads
    /// the whole, decompressed body within the request timeout.
    pub async fn get(&self, target: &ExactUrl, headers: HeaderMap) -> Result<HttpResponse> {
        tokio::time::timeout(self.request_timeout, self.get_untimed(target, headers))
            .await
            .map_err(|elapsed| send_error(SendFailure::Timeout, elapsed))?
    }

    async fn get_untimed(&self, target: &ExactUrl, mut headers: HeaderMap) -> Result<HttpResponse> {
        headers.insert(header::USER_AGENT, self.user_agent.clone());
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let mut request = http::Request::new(Empty::new());
        *request.uri_mut() = target.uri.clone();
        *request.headers_mut() = headers;
        let response = self.client.request(request).await.map_err(|e| {
            let failure = if e.is_connect() {
                SendFailure::Connect
            } else {
                SendFailure::Other
            };
            send_error(failure, e)
        })?;
        let (mut parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| send_error(SendFailure::Body, e))?
            .to_bytes();
        let body = decompress(&mut parts.headers, body)?;
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// The body without its gzip encoding, if it has one (the encoding headers then go, as
/// reqwest drops them).
fn decompress(headers: &mut HeaderMap, body: Bytes) -> Result<Bytes> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|e| e.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if !gzip {
        return Ok(body);
    }
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut plain)
        .map_err(|e| send_error(SendFailure::Body, e))?;
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::CONTENT_LENGTH);
    Ok(plain.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: &str = "https://org.crm.dynamics.com/api/data/v9.2/accounts?$filter=contains(name,'a')%20and%20x&$skiptoken=%3Ccookie%20p=%22%253c%22/%3E";

    #[test]
    fn a_valid_request_target_is_kept_as_written() {
        let exact = ExactUrl::parse(LINK).unwrap();
        assert_eq!(exact.uri.to_string(), LINK);
        assert!(
            exact.url().as_str().contains("%27a%27"),
            "the URL standard's reading re-encodes"
        );
        assert_eq!(exact.origin(), "https://org.crm.dynamics.com");
    }

    #[test]
    fn text_that_cannot_go_on_a_request_line_is_sent_percent_encoded() {
        let exact =
            ExactUrl::parse("https://org.crm.dynamics.com/api/x?$filter=name eq 'é'").unwrap();
        assert_eq!(
            exact.uri.to_string(),
            "https://org.crm.dynamics.com/api/x?$filter=name%20eq%20%27%C3%A9%27"
        );
    }

    #[test]
    fn the_origin_is_that_of_the_text_sent() {
        let origin = |text| ExactUrl::parse(text).unwrap().origin();
        assert_eq!(
            origin("HTTPS://Org.CRM.dynamics.com:443/x"),
            "https://org.crm.dynamics.com"
        );
        assert_eq!(origin("http://127.0.0.1:8080/x"), "http://127.0.0.1:8080");
        // The URL standard reads this host as 127.0.0.1; a connection would resolve the text.
        assert_eq!(origin("http://0x7f.1:8080/x"), "http://0x7f.1:8080");
        assert_eq!(origin("http://[::1]:8080/x"), "http://[::1]:8080");
    }

    #[test]
    fn what_is_no_absolute_url_is_refused_without_repeating_it() {
        for text in [
            "/api/data/v9.2/accounts?$skiptoken=secret",
            "not a url secret",
            "",
        ] {
            let error = ExactUrl::parse(text).unwrap_err();
            assert!(!error.contains("secret"), "{error}");
        }
        let debug = format!("{:?}", ExactUrl::parse(LINK).unwrap());
        assert!(debug.contains("/api/data/v9.2/accounts"), "{debug}");
        assert!(!debug.contains("skiptoken"), "{debug}");
    }

    #[test]
    fn gzip_bodies_are_decompressed_and_lose_their_encoding_headers() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, b"{\"value\":[]}").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let body = decompress(&mut headers, encoder.finish().unwrap().into()).unwrap();
        assert_eq!(&body[..], b"{\"value\":[]}");
        assert!(headers.get(header::CONTENT_ENCODING).is_none());
        let error = decompress(
            &mut HeaderMap::from_iter([(
                header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            )]),
            Bytes::from_static(b"not gzip"),
        )
        .unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Transport);
    }
}
