//! The Entra ID v2.0 token endpoint: requests, responses, and errors turned into guidance.

use super::cache::later;
use super::config::TenantId;
use super::scrub::Scrubber;
use super::token::TokenSet;
use crate::connection::InstanceUrl;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::{AccessToken, RefreshToken};
use crate::transport::{HttpResponse, Transport, classify, retry_after};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use url::Url;

/// Which grant a token request uses; it decides what an `invalid_grant` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl Grant {
    fn as_str(self) -> &'static str {
        match self {
            Grant::AuthorizationCode => "authorization_code",
            Grant::RefreshToken => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
        }
    }
}

/// `<authority>/<tenant>/oauth2/v2.0/<endpoint>`.
pub(crate) fn endpoint_url(authority: &Url, tenant: &TenantId, endpoint: &str) -> Result<Url> {
    authority
        .join(&format!("{}/oauth2/v2.0/{endpoint}", tenant.as_str()))
        .map_err(|e| Error::config(format!("the Entra ID {endpoint} URL cannot be built ({e})")))
}

/// What a token request proves the app's identity with; it decides what `invalid_client` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialKind {
    /// A public client: nothing but the client id.
    None,
    /// A client secret.
    Secret,
    /// A client assertion signed with the app's certificate.
    Certificate,
    /// A federated token (workload identity) as the client assertion.
    FederatedToken,
}

/// The form fields of one token request. Secret fields are remembered so that nothing the
/// server echoes back can carry them into an error.
pub(crate) struct TokenForm {
    fields: Vec<(&'static str, String)>,
    secrets: Scrubber,
    credential: CredentialKind,
}

impl TokenForm {
    pub(crate) fn new(grant: Grant, client_id: &str) -> Self {
        Self {
            fields: vec![
                ("grant_type", grant.as_str().to_owned()),
                ("client_id", client_id.to_owned()),
            ],
            secrets: Scrubber::default(),
            credential: CredentialKind::None,
        }
    }

    pub(crate) fn field(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((name, value.into()));
        self
    }

    pub(crate) fn secret(mut self, name: &'static str, value: &str) -> Self {
        self.secrets.add(value);
        self.fields.push((name, value.to_owned()));
        self
    }

    /// Records what proves the app's identity in this request.
    pub(crate) fn with_credential(mut self, credential: CredentialKind) -> Self {
        self.credential = credential;
        self
    }

    fn encode(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.fields.iter().map(|(k, v)| (*k, v.as_str())))
            .finish()
    }

    /// `text` with every secret of this form (raw, URL-encoded or JSON-escaped) replaced by
    /// `[redacted]`.
    fn scrub(&self, text: &str) -> String {
        self.secrets.scrub(text)
    }
}

/// A successful token response.
pub(crate) struct TokenResponse {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Duration,
    pub scopes: Vec<String>,
}

impl TokenResponse {
    /// The token set for `instance` of a response received at `now`: the scopes granted as
    /// reported, else as `requested`.
    pub(crate) fn into_token_set(
        self,
        instance: &InstanceUrl,
        requested: &[String],
        now: DateTime<Utc>,
    ) -> TokenSet {
        let scopes = if self.scopes.is_empty() {
            requested.to_vec()
        } else {
            self.scopes
        };
        let mut tokens = TokenSet::new(
            instance.clone(),
            AccessToken::new(self.access_token),
            later(now, self.expires_in),
        )
        .with_scopes(scopes);
        if let Some(refresh) = self.refresh_token {
            tokens = tokens.with_refresh_token(RefreshToken::new(refresh));
        }
        tokens
    }
}

/// Sends token requests to one token endpoint through the transport (no redirects, the
/// options' retry policy). Its errors, once retried, are marked exhausted, so the Web API
/// client never retries a token request again.
#[derive(Clone)]
pub(crate) struct TokenEndpoint {
    transport: Transport,
    url: Url,
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl TokenEndpoint {
    pub(crate) fn new(transport: Transport, url: Url) -> Self {
        Self { transport, url }
    }

    /// Sends the form `make_form` builds and returns the tokens, or an error that says what to
    /// do. The form is built again for every attempt, so a retried request carries a fresh
    /// client assertion (and a federated token file read again).
    pub(crate) async fn request(
        &self,
        grant: Grant,
        make_form: impl Fn() -> Result<TokenForm>,
    ) -> Result<TokenResponse> {
        self.transport
            .retrying(|| async {
                let form = make_form()?;
                self.request_once(grant, &form).await
            })
            .await
    }

    /// The token endpoint's URL (the `aud` of a client assertion).
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    async fn request_once(&self, grant: Grant, form: &TokenForm) -> Result<TokenResponse> {
        let request = self
            .transport
            .http()
            .post(self.url.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form.encode());
        let response = self
            .transport
            .send(request)
            .await
            .map_err(|e| e.with_context("Entra ID token endpoint"))?;
        if response.status.is_success() {
            return parse_success(&response.body);
        }
        Err(error_from_response(grant, &response, form))
    }
}

fn parse_success(body: &[u8]) -> Result<TokenResponse> {
    #[derive(Deserialize)]
    struct Raw {
        access_token: String,
        #[serde(default)]
        token_type: Option<String>,
        #[serde(default)]
        expires_in: Option<serde_json::Value>,
        #[serde(default)]
        refresh_token: Option<String>,
        #[serde(default)]
        scope: Option<String>,
    }
    // serde's messages can quote field values (tokens), so they are never passed on.
    let raw: Raw = serde_json::from_slice(body).map_err(|_| {
        Error::decode(
            "Entra ID's token response is not the JSON expected (no `access_token` or a malformed field); check that the authority is an Entra ID (or compatible) endpoint",
        )
    })?;
    if let Some(kind) = raw.token_type.as_deref() {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(Error::decode(format!(
                "Entra ID issued a `{kind}` token, not a Bearer token; check the authority"
            )));
        }
    }
    if raw.access_token.is_empty() {
        return Err(Error::decode(
            "Entra ID's token response has an empty `access_token`",
        ));
    }
    let expires_in = match raw.expires_in {
        // Entra always sends it; an hour is Entra's default lifetime if a stand-in does not.
        None => Duration::from_secs(3600),
        Some(value) => seconds(&value).ok_or_else(|| {
            Error::decode(
                "Entra ID's token response has an `expires_in` that is neither a number of seconds nor a string of one",
            )
        })?,
    };
    Ok(TokenResponse {
        access_token: raw.access_token,
        refresh_token: raw.refresh_token.filter(|t| !t.is_empty()),
        expires_in,
        scopes: raw
            .scope
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    })
}

/// Seconds from a JSON number or a string holding one (`3599`, `"3599"`, `3599.0`).
pub(crate) fn seconds(value: &serde_json::Value) -> Option<Duration> {
    match value {
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .or_else(|| n.as_f64().and_then(|f| Duration::try_from_secs_f64(f).ok())),
        serde_json::Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>().ok().map(Duration::from_secs).or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .and_then(|f| Duration::try_from_secs_f64(f).ok())
            })
        }
        _ => None,
    }
}

/// An OAuth error as Entra sends it, in a token response body or an authorize redirect.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct OAuthError {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<u64>,
    #[serde(default)]
    pub trace_id: Option<String>,
}

impl OAuthError {
    /// The AADSTS number: the first of `error_codes`, else the one the description starts with.
    fn aadsts(&self) -> Option<u64> {
        if let Some(code) = self.error_codes.first() {
            return Some(*code);
        }
        let description = self.error_description.as_deref()?;
        let start = description.find("AADSTS")? + "AADSTS".len();
        let digits: String = description[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }
}

fn error_from_response(grant: Grant, response: &HttpResponse, form: &TokenForm) -> Error {
    let status = response.status;
    let parsed = serde_json::from_slice::<OAuthError>(&response.body)
        .ok()
        .filter(|e| !e.error.is_empty());
    let verdict = classify(
        status.as_u16(),
        parsed.as_ref().map(|oauth| oauth.error.as_str()),
    );
    let error = match parsed {
        _ if verdict.kind == ErrorKind::Protocol => Error::new(
            ErrorKind::Protocol,
            format!(
                "the token endpoint answered with a redirect (HTTP {}); redirects are never followed so credentials stay with Entra ID; check the authority URL",
                status.as_u16()
            ),
        ),
        Some(oauth) => {
            let oauth = OAuthError {
                error_description: oauth.error_description.map(|d| form.scrub(&d)),
                ..oauth
            };
            guidance(grant, form.credential, Some(status), &oauth)
        }
        None => without_oauth_error(verdict.kind, status),
    };
    let error = error.with_status(status.as_u16());
    if verdict.retryable {
        error
            .with_retryable(true)
            .with_retry_after(retry_after(&response.headers))
    } else {
        error
    }
}

/// The error for an answer that carries no OAuth error.
fn without_oauth_error(kind: ErrorKind, status: StatusCode) -> Error {
    let status_part = format!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("error")
    );
    let message = match status.as_u16() {
        429 => format!("Entra ID is throttling token requests ({status_part}); retry later"),
        500..=599 => {
            format!("Entra ID is temporarily unavailable ({status_part}); try again later")
        }
        _ => format!(
            "the token endpoint answered {status_part} without an OAuth error; check the authority URL and the tenant"
        ),
    };
    Error::new(kind, message)
}

/// Turns an Entra OAuth error into an [`Error`] whose message says what to do. The
/// description (already free of secrets) and `trace_id` are kept for support.
///
/// The families below are asked in order; the first that knows the error words the message.
pub(crate) fn guidance(
    grant: Grant,
    credential: CredentialKind,
    status: Option<StatusCode>,
    oauth: &OAuthError,
) -> Error {
    let code = code_label(oauth);
    missing_consent(oauth, &code)
        .or_else(|| registration_problem(oauth, &code))
        .or_else(|| rejected_credential(credential, oauth, &code))
        .or_else(|| refused_grant(grant, oauth, &code))
        .or_else(|| refused_sign_in(oauth, &code))
        .or_else(|| temporarily_unavailable(oauth, &code))
        .unwrap_or_else(|| unrecognised(status, oauth, &code))
        .with_service_error(Some(oauth.error.clone()), oauth.error_description.clone())
        .with_request_id(oauth.trace_id.clone())
}

/// The error and its AADSTS number, as messages quote them: `invalid_client, AADSTS7000215`.
fn code_label(oauth: &OAuthError) -> String {
    match oauth.aadsts() {
        Some(n) => format!("{}, AADSTS{n}", oauth.error),
        None => oauth.error.clone(),
    }
}

/// `consent_required` or AADSTS65001: nobody consented to the app's permission.
fn missing_consent(oauth: &OAuthError, code: &str) -> Option<Error> {
    (oauth.error == "consent_required" || oauth.aadsts() == Some(65001)).then(|| {
        Error::new(
            ErrorKind::Auth,
            format!(
                "admin consent for the app is missing ({code}); have an administrator grant consent to the app's Dynamics CRM permission, or connect with client credentials through an application user instead"
            ),
        )
    })
}

/// AADSTS numbers that point at the connection's settings or the app registration.
fn registration_problem(oauth: &OAuthError, code: &str) -> Option<Error> {
    let message = match oauth.aadsts()? {
        700016 => format!(
            "Entra ID does not know this client id in the tenant ({code}); check the app registration's client id and the tenant"
        ),
        90002 => {
            format!("Entra ID does not know the tenant ({code}); check the tenant id or domain")
        }
        50011 => format!(
            "the redirect URI is not registered on the app ({code}); add it to the app registration's redirect URIs exactly as the connection sends it"
        ),
        7000218 => format!(
            "the app registration is a confidential client and needs a client secret ({code}); give the connection the client secret, or allow public client flows on the app"
        ),
        7000216 => format!(
            "the app registration needs a credential for this request ({code}); give the connection a client secret, a client certificate or a federated token"
        ),
        _ => return None,
    };
    Some(Error::new(ErrorKind::Config, message))
}

/// The app's own credential was refused: an expired secret, or a secret, certificate or
/// federated token Entra does not accept (worded for the kind of credential sent).
fn rejected_credential(
    credential: CredentialKind,
    oauth: &OAuthError,
    code: &str,
) -> Option<Error> {
    let aadsts = oauth.aadsts();
    let invalid_client = oauth.error == "invalid_client";
    let message = if aadsts == Some(7000222) {
        format!(
            "the client secret has expired ({code}); create a new secret in the app registration and give it to the connection"
        )
    } else if credential == CredentialKind::Certificate
        && (invalid_client || aadsts == Some(700027))
    {
        format!(
            "Entra ID rejected the client certificate ({code}); check that this certificate is uploaded to the app registration (Certificates & secrets), has not expired, and that the client id and tenant are the app's"
        )
    } else if credential == CredentialKind::FederatedToken
        && (invalid_client || matches!(aadsts, Some(70021 | 700211 | 700212 | 700213 | 700024)))
    {
        format!(
            "Entra ID rejected the federated token ({code}); check that the app registration has a federated credential whose issuer and subject match this workload's service account token (audience api://AzureADTokenExchange), and that the token file is the one the platform keeps fresh"
        )
    } else if invalid_client {
        format!(
            "Entra ID rejected the client secret or client id ({code}); check the app registration's client id and secret (use the secret's value, not its id)"
        )
    } else {
        return None;
    };
    Some(Error::new(ErrorKind::Auth, message))
}

/// `invalid_grant`: what was refused depends on the grant sent.
fn refused_grant(grant: Grant, oauth: &OAuthError, code: &str) -> Option<Error> {
    if oauth.error != "invalid_grant" {
        return None;
    }
    let message = match grant {
        Grant::RefreshToken => format!(
            "Entra ID refused the refresh token ({code}): it expired or was revoked; re-authorize the connection"
        ),
        Grant::AuthorizationCode => format!(
            "Entra ID refused the authorization code ({code}): it expired (codes last about 10 minutes), was already used, or the redirect URI or PKCE verifier does not match; start the sign-in again"
        ),
        Grant::ClientCredentials => format!(
            "Entra ID refused the client credentials grant ({code}); check the app registration and its tenant"
        ),
    };
    Some(Error::new(ErrorKind::Auth, message))
}

/// OAuth errors about the sign-in itself: the user, the flow or the scope.
fn refused_sign_in(oauth: &OAuthError, code: &str) -> Option<Error> {
    let (kind, message) = match oauth.error.as_str() {
        "interaction_required" | "login_required" => (
            ErrorKind::Auth,
            format!(
                "Entra ID needs the user to sign in interactively again ({code}), for example for multi-factor authentication or a conditional access policy; re-authorize the connection"
            ),
        ),
        "unauthorized_client" => (
            ErrorKind::Auth,
            format!(
                "the app registration is not allowed to use this flow ({code}); check the client id, and that the app is enabled for this grant in its tenant (public client flows, redirect URIs, supported account types)"
            ),
        ),
        "invalid_scope" | "invalid_resource" => (
            ErrorKind::Config,
            format!(
                "Entra ID refused the requested scope ({code}); check the instance URL and that the app registration has the Dynamics CRM API permission"
            ),
        ),
        "access_denied" => (
            ErrorKind::Auth,
            format!(
                "the sign-in was cancelled or consent was declined ({code}); sign in again and accept the requested permissions"
            ),
        ),
        _ => return None,
    };
    Some(Error::new(kind, message))
}

/// `temporarily_unavailable` or `server_error`: the one retryable family.
fn temporarily_unavailable(oauth: &OAuthError, code: &str) -> Option<Error> {
    matches!(
        oauth.error.as_str(),
        "temporarily_unavailable" | "server_error"
    )
    .then(|| {
        Error::new(
            ErrorKind::Service,
            format!("Entra ID is temporarily unavailable ({code}); try again later"),
        )
        .with_retryable(true)
    })
}

/// Any other error: the status, the code and the description's first sentence.
fn unrecognised(status: Option<StatusCode>, oauth: &OAuthError, code: &str) -> Error {
    let detail = first_sentence(oauth.error_description.as_deref())
        .map(|sentence| format!(": {sentence}"))
        .unwrap_or_default();
    let status = status
        .map(|s| format!("HTTP {}, ", s.as_u16()))
        .unwrap_or_default();
    Error::new(
        ErrorKind::Service,
        format!(
            "Entra ID refused the request ({status}{code}){detail}; check the app registration and the connection's settings"
        ),
    )
}

/// The first sentence of a description's first line, when there is one.
fn first_sentence(description: Option<&str>) -> Option<String> {
    let line = description?.lines().next()?;
    let sentence = match line.find(". ") {
        Some(end) => &line[..=end],
        None => line,
    };
    Some(sentence.trim().to_owned()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_is_a_number_or_a_string() {
        for body in [
            r#"{"token_type":"Bearer","expires_in":3599,"access_token":"a"}"#,
            r#"{"token_type":"Bearer","expires_in":"3599","access_token":"a"}"#,
        ] {
            let parsed = parse_success(body.as_bytes()).unwrap();
            assert_eq!(parsed.expires_in, Duration::from_secs(3599));
        }
        let bad =
            r#"{"token_type":"Bearer","expires_in":"soon-eyJsecret","access_token":"eyJsecret"}"#;
        let error = parse_success(bad.as_bytes()).err().unwrap();
        assert!(!format!("{error:?}").contains("eyJsecret"));
    }

    #[test]
    fn aadsts_comes_from_codes_or_description() {
        let from_description = OAuthError {
            error: "invalid_client".into(),
            error_description: Some("AADSTS7000215: Invalid client secret provided.".into()),
            ..Default::default()
        };
        assert_eq!(from_description.aadsts(), Some(7000215));
    }

    #[test]
    fn scrub_removes_sent_secrets() {
        let form = TokenForm::new(Grant::RefreshToken, "id").secret("refresh_token", "0.AAAA-rt");
        assert_eq!(
            form.scrub("bad token 0.AAAA-rt here"),
            "bad token [redacted] here"
        );
    }
}
