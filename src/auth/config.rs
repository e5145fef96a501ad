//! The Entra ID side of a connection: the tenant and the app registration.

use super::certificate::ClientCertificate;
use super::credential::ClientCredential;
use crate::connection::is_loopback;
use crate::error::{Error, Result};
use crate::secret::ClientSecret;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use url::Url;

/// A validated Entra ID tenant: a GUID, a verified domain (`contoso.onmicrosoft.com`),
/// `organizations` or `common`.
///
/// The value goes into the authority path (`<authority>/<tenant>/oauth2/v2.0/token`), so anything
/// else (slashes, spaces, `consumers`) is refused.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Parses and validates a tenant. GUIDs and domains are kept in lower case.
    pub fn parse(input: &str) -> Result<Self> {
        let value = input.trim().to_ascii_lowercase();
        if value == "organizations" || value == "common" || is_guid(&value) || is_domain(&value) {
            return Ok(Self(value));
        }
        Err(Error::config(format!(
            "`{}` is not an Entra ID tenant; give the directory (tenant) id GUID, a domain such as contoso.onmicrosoft.com, `organizations` or `common`",
            input.trim()
        )))
    }

    /// The tenant as it appears in the authority path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this names one directory (a GUID or a domain) rather than `organizations` or
    /// `common`. Client credentials need one directory.
    pub fn is_specific(&self) -> bool {
        self.0 != "organizations" && self.0 != "common"
    }
}

/// Whether `value` is a GUID in the 8-4-4-4-12 hex form.
pub(crate) fn is_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_domain(value: &str) -> bool {
    let labels: Vec<&str> = value.split('.').collect();
    value.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TenantId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<TenantId> for String {
    fn from(value: TenantId) -> Self {
        value.0
    }
}

/// Which delegated scope the sign-in asks for on the instance.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceScope {
    /// `<instance>/user_impersonation`: the Dynamics CRM delegated permission. The usual choice
    /// for public clients.
    UserImpersonation,
    /// `<instance>/.default`: every permission consented for the app. The usual choice for
    /// confidential clients.
    Default,
}

impl ResourceScope {
    /// The scope string for `resource` (an instance root without the trailing slash).
    pub(crate) fn scope_for(self, resource: &str) -> String {
        match self {
            ResourceScope::UserImpersonation => format!("{resource}/user_impersonation"),
            ResourceScope::Default => format!("{resource}/.default"),
        }
    }
}

/// An Entra ID app registration used to authorize connections: the tenant, the application
/// (client) id, the credential of a confidential client (a client secret, a certificate or a
/// federated token), and the redirect URI of the authorization code flow.
///
/// Build one with [`EntraApp::builder`].
#[derive(Clone)]
pub struct EntraApp {
    tenant: TenantId,
    client_id: String,
    credential: Option<ClientCredential>,
    redirect_uri: Option<Url>,
}

impl EntraApp {
    /// Starts describing the app `client_id` (the application id GUID) in `tenant`.
    pub fn builder(tenant: impl Into<String>, client_id: impl Into<String>) -> EntraAppBuilder {
        EntraAppBuilder {
            tenant: tenant.into(),
            client_id: client_id.into(),
            credential: None,
            redirect_uri: None,
        }
    }

    /// The tenant tokens are requested from.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The application (client) id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client secret, when that is the app's credential.
    pub fn client_secret(&self) -> Option<&ClientSecret> {
        match &self.credential {
            Some(ClientCredential::Secret(secret)) => Some(secret),
            _ => None,
        }
    }

    /// How the app proves its identity to Entra ID, for a confidential client.
    pub fn credential(&self) -> Option<&ClientCredential> {
        self.credential.as_ref()
    }

    /// The redirect URI registered for the authorization code flow.
    pub fn redirect_uri(&self) -> Option<&Url> {
        self.redirect_uri.as_ref()
    }

    /// Whether the app proves its identity (a confidential client).
    pub fn is_confidential(&self) -> bool {
        self.credential.is_some()
    }
}

impl fmt::Debug for EntraApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraApp")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .field("redirect_uri", &self.redirect_uri.as_ref().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

/// Builds an [`EntraApp`].
#[must_use]
pub struct EntraAppBuilder {
    tenant: String,
    client_id: String,
    credential: Option<ClientCredential>,
    redirect_uri: Option<String>,
}

impl fmt::Debug for EntraAppBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraAppBuilder")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl EntraAppBuilder {
    /// Makes the app a confidential client that proves itself with `secret`. Client
    /// credentials need this, a certificate or a federated token; optional for the
    /// authorization code flow. Default: none (a public client). Replaces another credential.
    pub fn with_client_secret(mut self, secret: ClientSecret) -> Self {
        self.credential = Some(ClientCredential::Secret(secret));
        self
    }

    /// Makes the app a confidential client that proves itself with a client assertion signed
    /// with `certificate` (Microsoft's recommendation over secrets). Replaces another credential.
    pub fn with_client_certificate(mut self, certificate: ClientCertificate) -> Self {
        self.credential = Some(ClientCredential::Certificate(certificate));
        self
    }

    /// Makes the app a confidential client that proves itself with the federated token in the
    /// file at `path` (read again for every token request, as the platform rotates it), such
    /// as Kubernetes workload identity's `AZURE_FEDERATED_TOKEN_FILE`; see
    /// [`WorkloadIdentity`](crate::WorkloadIdentity). Replaces another credential.
    pub fn with_federated_token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credential = Some(ClientCredential::FederatedTokenFile(path.into()));
        self
    }

    /// The redirect URI registered on the app, where Entra sends the browser back after
    /// sign-in. Required for the authorization code flow. `https://`, `http://` on a loopback
    /// host, or a private scheme (`myapp://auth`) of a native app. Default: none.
    pub fn with_redirect_uri(mut self, redirect_uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(redirect_uri.into());
        self
    }

    /// Validates the settings and builds the app.
    pub fn build(self) -> Result<EntraApp> {
        let tenant = TenantId::parse(&self.tenant)?;
        let client_id = self.client_id.trim().to_ascii_lowercase();
        if !is_guid(&client_id) {
            return Err(Error::config(format!(
                "`{}` is not an application (client) id; copy the GUID from the app registration's overview page",
                self.client_id.trim()
            )));
        }
        if let Some(credential) = &self.credential {
            credential.validate()?;
        }
        let redirect_uri = self
            .redirect_uri
            .as_deref()
            .map(parse_redirect_uri)
            .transpose()?;
        Ok(EntraApp {
            tenant,
            client_id,
            credential: self.credential,
            redirect_uri,
        })
    }
}

fn parse_redirect_uri(input: &str) -> Result<Url> {
    let url = Url::parse(input.trim()).map_err(|e| {
        Error::config(format!(
            "the redirect URI `{input}` is not a URL ({e}); give the redirect URI registered on the app, such as http://localhost:8400/callback"
        ))
    })?;
    let loopback = url.host().is_some_and(|host| is_loopback(&host));
    if url.scheme() == "http" && !loopback {
        return Err(Error::config(format!(
            "the redirect URI `{input}` uses http:// on a host that is not loopback; Entra ID needs https:// (plain http is accepted on localhost only)"
        )));
    }
    if url.fragment().is_some() {
        return Err(Error::config(format!(
            "the redirect URI `{input}` contains a fragment (#...); remove it"
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_validated() {
        for ok in [
            "common",
            "Organizations",
            "contoso.onmicrosoft.com",
            "72F988BF-86F1-41AF-91AB-2D7CD011DB47",
        ] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "consumers",
            "contoso",
            "a/b.com",
            "72f988bf-86f1-41af-91ab",
            "x..y",
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
        }
        assert!(!TenantId::parse("common").unwrap().is_specific());
        assert_eq!(
            TenantId::parse("72F988BF-86F1-41AF-91AB-2D7CD011DB47")
                .unwrap()
                .as_str(),
            "72f988bf-86f1-41af-91ab-2d7cd011db47"
        );
    }

    #[test]
    fn app_validates_client_id_and_redirect_uri() {
        let id = "11111111-2222-3333-4444-555555555555";
        assert!(EntraApp::builder("common", "not-a-guid").build().is_err());
        assert!(
            EntraApp::builder("common", id)
                .with_redirect_uri("http://example.com/cb")
                .build()
                .is_err()
        );
        assert!(
            EntraApp::builder("common", id)
                .with_client_secret(ClientSecret::new(" "))
                .build()
                .is_err()
        );
        for ok in [
            "http://localhost:8400/callback",
            "http://127.0.0.1/cb",
            "https://app.contoso.com/cb",
            "myapp://auth",
        ] {
            assert!(
                EntraApp::builder("common", id)
                    .with_redirect_uri(ok)
                    .build()
                    .is_ok(),
                "{ok}"
            );
        }
    }
}
