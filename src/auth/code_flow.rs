//! The authorization code flow with PKCE: the sign-in URL, the pending sign-in a host stores
//! until the redirect comes back, and that redirect.

use super::config::ResourceScope;
use super::entra::{CredentialKind, Grant, OAuthError, guidance};
use super::pkce::{PkceVerifier, constant_time_eq, random_urlsafe};
use crate::connection::InstanceUrl;
use crate::error::{Error, Result};
use crate::secret::AuthorizationCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;
use url::Url;

/// How long a started sign-in can be completed, unless configured otherwise: about as long as
/// Entra ID's authorization codes live.
pub const DEFAULT_SIGN_IN_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// How far in the future a sign-in's creation time may lie (clocks of two replicas differ).
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The `prompt` of the sign-in page.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prompt {
    /// `login`: the user must enter their credentials even with a session.
    Login,
    /// `select_account`: the user picks one of their accounts.
    SelectAccount,
    /// `consent`: the consent page is shown even when consent was given.
    Consent,
    /// `none`: no interaction; fails with `interaction_required` if one is needed.
    None,
}

impl Prompt {
    fn as_str(self) -> &'static str {
        match self {
            Prompt::Login => "login",
            Prompt::SelectAccount => "select_account",
            Prompt::Consent => "consent",
            Prompt::None => "none",
        }
    }
}

/// Options of one sign-in: prompt, login hint and the delegated scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct AuthorizeOptions {
    prompt: Option<Prompt>,
    login_hint: Option<String>,
    resource_scope: Option<ResourceScope>,
}

impl AuthorizeOptions {
    /// Default options: no prompt, no hint, the scope chosen by the app's kind.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the `prompt`. Default: none (Entra decides).
    pub fn with_prompt(mut self, prompt: Prompt) -> Self {
        self.prompt = Some(prompt);
        self
    }

    /// Pre-fills the sign-in name (`login_hint`), such as `admin@contoso.com`. Default: none.
    pub fn with_login_hint(mut self, login_hint: impl Into<String>) -> Self {
        self.login_hint = Some(login_hint.into());
        self
    }

    /// Chooses the scope on the instance. Default: [`ResourceScope::Default`] for a confidential
    /// client, [`ResourceScope::UserImpersonation`] for a public one. `offline_access` is always
    /// added so a refresh token is issued.
    pub fn with_resource_scope(mut self, scope: ResourceScope) -> Self {
        self.resource_scope = Some(scope);
        self
    }

    pub(crate) fn resource_scope(&self, confidential: bool) -> ResourceScope {
        self.resource_scope.unwrap_or(if confidential {
            ResourceScope::Default
        } else {
            ResourceScope::UserImpersonation
        })
    }
}

/// A pending sign-in: send the admin's browser to [`AuthorizationRequest::url`], then give this
/// request and the redirect back to
/// [`AuthorizationCodeAuthorizer::complete_authorization`](crate::AuthorizationCodeAuthorizer::complete_authorization).
///
/// A serde value the host may store anywhere until the redirect arrives (a session, a
/// database, a cookie), so that any replica of the host, or the host after a restart, completes
/// the sign-in. It holds the PKCE verifier, a secret: store it encrypted, and delete it once
/// used. Its `Debug` shows neither the verifier nor the `state`. It expires
/// [`DEFAULT_SIGN_IN_LIFETIME`] after it was created (configurable on the authorizer). It is
/// not `Clone`: it is used once. No OpenID Connect `nonce` is used, as no ID token is
/// requested.
#[derive(Serialize, Deserialize)]
pub struct AuthorizationRequest {
    url: Url,
    state: String,
    #[serde(rename = "code_verifier")]
    verifier: PkceVerifier,
    instance: InstanceUrl,
    client_id: String,
    redirect_uri: Url,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
}

impl AuthorizationRequest {
    /// Builds the authorize URL with a fresh `state` and PKCE challenge, created at `now`.
    pub(crate) fn build(
        authorize_endpoint: &Url,
        client_id: &str,
        redirect_uri: &Url,
        instance: &InstanceUrl,
        confidential: bool,
        options: &AuthorizeOptions,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let state = random_urlsafe(16)?;
        let verifier = PkceVerifier::generate()?;
        let scopes = vec![
            options
                .resource_scope(confidential)
                .scope_for(&instance.resource()),
            "offline_access".to_owned(),
        ];
        let mut url = authorize_endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("client_id", client_id)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", redirect_uri.as_str())
                .append_pair("response_mode", "query")
                .append_pair("scope", &scopes.join(" "))
                .append_pair("state", &state)
                .append_pair("code_challenge", &verifier.challenge())
                .append_pair("code_challenge_method", "S256");
            if let Some(prompt) = options.prompt {
                query.append_pair("prompt", prompt.as_str());
            }
            if let Some(hint) = options.login_hint.as_deref() {
                query.append_pair("login_hint", hint);
            }
        }
        Ok(Self {
            url,
            state,
            verifier,
            instance: instance.clone(),
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.clone(),
            scopes,
            created_at: now,
        })
    }

    /// The sign-in URL to open in the admin's browser.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The random `state` sent with the request; the redirect must carry it back.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The instance the sign-in is for.
    pub fn instance(&self) -> &InstanceUrl {
        &self.instance
    }

    /// The application (client) id the sign-in is for.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// When the sign-in was started.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// Refuses the sign-in when it was started more than `lifetime` before `now` (or
    /// implausibly far after it).
    pub(crate) fn ensure_current(&self, now: DateTime<Utc>, lifetime: Duration) -> Result<()> {
        let age = now.signed_duration_since(self.created_at);
        let too_old = age.to_std().is_ok_and(|age| age > lifetime);
        let from_the_future = (-age).to_std().is_ok_and(|ahead| ahead > CLOCK_SKEW);
        if too_old {
            return Err(Error::auth(format!(
                "this sign-in was started at {} and expired after {} minutes; start the sign-in again",
                self.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                lifetime.as_secs() / 60
            )));
        }
        if from_the_future {
            return Err(Error::auth(format!(
                "this sign-in claims to have been started at {}, which is in the future; check the clocks of the host's replicas and start the sign-in again",
                self.created_at.format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
        Ok(())
    }

    pub(crate) fn verifier(&self) -> &PkceVerifier {
        &self.verifier
    }

    pub(crate) fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    pub(crate) fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Reads the redirect the host received: the full redirect URL, or just its query
    /// (`code=...&state=...`). Refuses a `state` that does not match (a CSRF guard) and turns an
    /// `error=...` redirect into an error that says what to do.
    pub(crate) fn code_from_redirect(&self, redirect: &str) -> Result<AuthorizationCode> {
        let pairs = redirect_pairs(redirect);
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        match get("state") {
            Some(state) if constant_time_eq(state, &self.state) => {}
            Some(_) => {
                return Err(Error::auth(
                    "the redirect's `state` does not match this sign-in, so it was refused (a CSRF guard); start the sign-in again from the connection",
                ));
            }
            None => {
                return Err(Error::auth(
                    "the redirect has no `state`, so it was refused (a CSRF guard); give the full redirect URL Entra ID sent the browser to",
                ));
            }
        }
        if let Some(error) = get("error") {
            let oauth = OAuthError {
                error: error.to_owned(),
                error_description: get("error_description").map(str::to_owned),
                error_codes: Vec::new(),
                trace_id: get("trace_id").map(str::to_owned),
            };
            return Err(guidance(
                Grant::AuthorizationCode,
                CredentialKind::None,
                None,
                &oauth,
            ));
        }
        match get("code") {
            Some(code) if !code.is_empty() => Ok(AuthorizationCode::new(code)),
            _ => Err(Error::auth(
                "the redirect carries neither a `code` nor an `error`; give the full redirect URL Entra ID sent the browser to",
            )),
        }
    }
}

/// The query (or, failing that, fragment) parameters of a redirect URL or a bare query.
fn redirect_pairs(redirect: &str) -> Vec<(String, String)> {
    let redirect = redirect.trim();
    let (query, fragment) = match Url::parse(redirect) {
        Ok(url) => (
            url.query().unwrap_or_default().to_owned(),
            url.fragment().unwrap_or_default().to_owned(),
        ),
        Err(_) => {
            let bare = redirect.rsplit_once('?').map_or(redirect, |(_, q)| q);
            (bare.trim_start_matches('#').to_owned(), String::new())
        }
    };
    let parse = |text: &str| -> Vec<(String, String)> {
        url::form_urlencoded::parse(text.as_bytes())
            .into_owned()
            .collect()
    };
    let pairs = parse(&query);
    if pairs
        .iter()
        .any(|(k, _)| k == "state" || k == "code" || k == "error")
    {
        pairs
    } else {
        parse(&fragment)
    }
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("instance", &self.instance)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri.as_str())
            .field("scopes", &self.scopes)
            .field("verifier", &self.verifier)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}
