//! How a confidential app proves its identity at the token endpoint: a client secret, a
//! certificate, or a federated token read from a file (Kubernetes workload identity).

use super::certificate::ClientCertificate;
use super::config::EntraApp;
use super::entra::{CredentialKind, TokenForm};
use crate::error::{Error, Result};
use crate::secret::ClientSecret;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use url::Url;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How a confidential app proves its identity to Entra ID. Set with
/// [`EntraAppBuilder`](crate::EntraAppBuilder)'s `with_client_secret`,
/// `with_client_certificate` or `with_federated_token_file`.
///
/// Its `Debug` never shows a secret or a key.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum ClientCredential {
    /// A client secret (`client_secret`).
    Secret(ClientSecret),
    /// A client assertion signed with the app's certificate.
    Certificate(ClientCertificate),
    /// A federated token read from this file for every token request and sent as the client
    /// assertion (Kubernetes workload identity).
    FederatedTokenFile(PathBuf),
}

impl ClientCredential {
    /// Refuses an empty secret or file name.
    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            ClientCredential::Secret(secret) if secret.secret().trim().is_empty() => {
                Err(Error::config(
                    "the client secret is empty; give the secret's value (not its id) from the app registration, or none for a public client",
                ))
            }
            ClientCredential::FederatedTokenFile(path) if path.as_os_str().is_empty() => {
                Err(Error::config(
                    "the federated token file name is empty; give the path the platform writes the token to (AZURE_FEDERATED_TOKEN_FILE on Kubernetes)",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Adds the credential's fields to `form`: `client_secret`, or `client_assertion_type` and a
    /// `client_assertion` made (or read) now. `token_url` is the assertion's audience.
    pub(crate) fn add_to(
        &self,
        form: TokenForm,
        client_id: &str,
        token_url: &Url,
        now: DateTime<Utc>,
    ) -> Result<TokenForm> {
        let (kind, assertion) = match self {
            ClientCredential::Secret(secret) => {
                return Ok(form
                    .secret("client_secret", secret.secret())
                    .with_credential(CredentialKind::Secret));
            }
            ClientCredential::Certificate(certificate) => (
                CredentialKind::Certificate,
                certificate.assertion(client_id, token_url, now)?,
            ),
            ClientCredential::FederatedTokenFile(path) => {
                (CredentialKind::FederatedToken, read_federated_token(path)?)
            }
        };
        Ok(form
            .field("client_assertion_type", JWT_BEARER)
            .secret("client_assertion", &assertion)
            .with_credential(kind))
    }
}

/// The federated token in `path`, read now (the platform rotates the file).
fn read_federated_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::config(format!(
            "cannot read the federated token file {} ({e}); on Kubernetes, check that the pod's service account is set up for workload identity (the webhook mounts the token and sets AZURE_FEDERATED_TOKEN_FILE)",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::config(format!(
            "the federated token file {} is empty; check that the platform writes the service account token there",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

/// The Kubernetes workload identity settings that the Azure Workload Identity webhook puts in a
/// pod's environment: `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE` and,
/// optionally, `AZURE_AUTHORITY_HOST`.
///
/// ```no_run
/// # use d365_connector::{ClientCredentialsAuthorizer, Connection, WorkloadIdentity};
/// # fn run() -> d365_connector::Result<()> {
/// let identity = WorkloadIdentity::from_env()?.expect("the pod has workload identity");
/// let mut connection = Connection::builder("Contoso", "https://contoso.crm4.dynamics.com");
/// if let Some(authority) = identity.authority_host() {
///     connection = connection.with_authority(authority);
/// }
/// let connection = connection.build()?;
/// let authorizer = ClientCredentialsAuthorizer::builder(&connection, identity.app()?).build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIdentity {
    tenant_id: String,
    client_id: String,
    token_file: PathBuf,
    authority_host: Option<String>,
}

impl WorkloadIdentity {
    /// The variables that must all be set.
    pub const REQUIRED_VARIABLES: [&'static str; 3] = [
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
    ];

    /// Reads the settings from the process environment; see [`from_lookup`](Self::from_lookup).
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (a variable's value by name). `None` when none of
    /// [`REQUIRED_VARIABLES`](Self::REQUIRED_VARIABLES) is set; an error naming the missing
    /// ones when only some are.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let value = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let values = Self::REQUIRED_VARIABLES.map(value);
        let missing: Vec<&str> = Self::REQUIRED_VARIABLES
            .iter()
            .zip(&values)
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| *name)
            .collect();
        if missing.len() == values.len() {
            return Ok(None);
        }
        let [Some(client_id), Some(tenant_id), Some(token_file)] = values else {
            return Err(Error::config(format!(
                "workload identity is only partly configured: {} not set; check the pod's service account and the azure.workload.identity/use label",
                missing.join(", ")
            )));
        };
        Ok(Some(Self {
            tenant_id: tenant_id.trim().to_owned(),
            client_id: client_id.trim().to_owned(),
            token_file: PathBuf::from(token_file.trim()),
            authority_host: value("AZURE_AUTHORITY_HOST").map(|v| v.trim().to_owned()),
        }))
    }

    /// `AZURE_TENANT_ID`.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// `AZURE_CLIENT_ID`: the app registration (or user-assigned managed identity) trusted for
    /// the service account.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// `AZURE_FEDERATED_TOKEN_FILE`.
    pub fn token_file(&self) -> &Path {
        &self.token_file
    }

    /// `AZURE_AUTHORITY_HOST`, if set (such as `https://login.microsoftonline.com/`); give it to
    /// [`ConnectionBuilder::with_authority`](crate::ConnectionBuilder::with_authority).
    pub fn authority_host(&self) -> Option<&str> {
        self.authority_host.as_deref()
    }

    /// The app registration, proving itself with the federated token file.
    pub fn app(&self) -> Result<EntraApp> {
        EntraApp::builder(&self.tenant_id, &self.client_id)
            .with_federated_token_file(&self.token_file)
            .build()
    }
}
