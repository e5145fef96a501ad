//! A connection: the link to exactly one Dynamics 365 instance.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use url::{Host, Url};

/// The Dataverse Web API version used unless the connection names another.
pub const DEFAULT_API_VERSION: &str = "v9.2";

/// The Microsoft cloud an instance lives in; it decides the Entra ID authority.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cloud {
    /// Commercial cloud, `crm*.dynamics.com` (including GCC on `crm9`).
    Commercial,
    /// US Government GCC High, `crm.microsoftdynamics.us`.
    UsGovHigh,
    /// US Government DoD, `crm.appsplatform.us`.
    UsGovDod,
    /// China, operated by 21Vianet, `crm.dynamics.cn`.
    China,
    /// The legacy Microsoft Cloud Germany, `crm.microsoftdynamics.de`.
    GermanyLegacy,
    /// Any other host; the authority must be named explicitly.
    Custom,
}

impl Cloud {
    /// The Entra ID authority host that issues tokens for this cloud, if known.
    pub fn authority_host(self) -> Option<&'static str> {
        match self {
            Cloud::Commercial => Some("login.microsoftonline.com"),
            Cloud::UsGovHigh | Cloud::UsGovDod => Some("login.microsoftonline.us"),
            Cloud::China => Some("login.partner.microsoftonline.cn"),
            Cloud::GermanyLegacy => Some("login.microsoftonline.de"),
            Cloud::Custom => None,
        }
    }
}

/// Known Dynamics host suffixes: (suffix after the org label, cloud, region).
const KNOWN_HOSTS: &[(&str, Cloud, &str)] = &[
    ("crm.dynamics.com", Cloud::Commercial, "NAM"),
    ("crm2.dynamics.com", Cloud::Commercial, "SAM"),
    ("crm3.dynamics.com", Cloud::Commercial, "CAN"),
    ("crm4.dynamics.com", Cloud::Commercial, "EUR"),
    ("crm5.dynamics.com", Cloud::Commercial, "APJ"),
    ("crm6.dynamics.com", Cloud::Commercial, "OCE"),
    ("crm7.dynamics.com", Cloud::Commercial, "JPN"),
    ("crm8.dynamics.com", Cloud::Commercial, "IND"),
    ("crm9.dynamics.com", Cloud::Commercial, "GCC"),
    ("crm11.dynamics.com", Cloud::Commercial, "GBR"),
    ("crm12.dynamics.com", Cloud::Commercial, "FRA"),
    ("crm14.dynamics.com", Cloud::Commercial, "ZAF"),
    ("crm15.dynamics.com", Cloud::Commercial, "UAE"),
    ("crm16.dynamics.com", Cloud::Commercial, "GER"),
    ("crm17.dynamics.com", Cloud::Commercial, "CHE"),
    ("crm19.dynamics.com", Cloud::Commercial, "NOR"),
    ("crm20.dynamics.com", Cloud::Commercial, "SGP"),
    ("crm21.dynamics.com", Cloud::Commercial, "KOR"),
    ("crm.microsoftdynamics.us", Cloud::UsGovHigh, "USG"),
    ("crm.appsplatform.us", Cloud::UsGovDod, "DOD"),
    ("crm.dynamics.cn", Cloud::China, "CHN"),
    ("crm.microsoftdynamics.de", Cloud::GermanyLegacy, "DEU"),
];

/// The validated root URL of one Dataverse instance, such as `https://contoso.crm4.dynamics.com/`.
///
/// Any path (`/main.aspx`), fragment or trailing slash in the input is dropped. `http://` is
/// refused except on loopback hosts, and so are user info and queries.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceUrl(Url);

impl InstanceUrl {
    /// Parses and validates an instance URL.
    pub fn parse(input: &str) -> Result<Self> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(Error::config(
                "the instance URL is empty; give the URL of the Dynamics 365 environment, such as https://contoso.crm.dynamics.com",
            ));
        }
        let url = Url::parse(trimmed).map_err(|e| {
            Error::config(format!(
                "`{}` is not a URL ({e}); give the URL of the Dynamics 365 environment, such as https://contoso.crm.dynamics.com",
                shown(trimmed)
            ))
        })?;
        let host = url
            .host()
            .ok_or_else(|| Error::config("the instance URL has no host name"))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => {
                return Err(Error::config(format!(
                    "the instance URL uses http:// on `{host}`; Dataverse needs https:// (plain http is accepted on loopback hosts only)"
                )));
            }
            other => {
                return Err(Error::config(format!(
                    "the instance URL has scheme `{other}`; use an https:// URL"
                )));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::config(
                "the instance URL contains user info (user:password@); remove it, credentials go to the Authorizer",
            ));
        }
        if url.query().is_some() {
            return Err(Error::config(
                "the instance URL contains a query (?...); give only the environment's address, such as https://contoso.crm.dynamics.com",
            ));
        }
        let mut root = url;
        root.set_path("/");
        root.set_fragment(None);
        Ok(Self(root))
    }

    /// The root URL, always ending with `/`.
    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// The host name, such as `contoso.crm4.dynamics.com`.
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    /// The root URL without the trailing slash, as used in OAuth scopes
    /// (`https://contoso.crm4.dynamics.com`).
    pub fn resource(&self) -> String {
        self.0.as_str().trim_end_matches('/').to_owned()
    }

    /// Whether `url` has the same scheme, host and port as this instance.
    pub fn is_same_origin(&self, url: &Url) -> bool {
        url.origin() == self.0.origin()
    }

    /// The cloud and region derived from the host, if it is a known Dynamics host.
    fn known_host(&self) -> Option<(Cloud, &'static str)> {
        let host = self.host().to_ascii_lowercase();
        let (_org, suffix) = host.split_once('.')?;
        KNOWN_HOSTS
            .iter()
            .find(|(known, _, _)| *known == suffix)
            .map(|(_, cloud, region)| (*cloud, *region))
    }
}

/// Whether `host` is `localhost` or a loopback address.
pub(crate) fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

impl fmt::Debug for InstanceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceUrl({})", self.0)
    }
}

impl fmt::Display for InstanceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl TryFrom<String> for InstanceUrl {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<InstanceUrl> for String {
    fn from(value: InstanceUrl) -> Self {
        value.0.into()
    }
}

/// A named link to exactly one Dynamics 365 instance: what identifies it (its URL, cloud,
/// authority and Web API version). How requests are sent is set by
/// [`ClientOptions`](crate::ClientOptions).
///
/// Build one with [`Connection::builder`]. It is a serde type, so a host can store it as JSON;
/// reading it back runs the same validation as the builder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredConnection", into = "StoredConnection")]
pub struct Connection {
    name: String,
    instance: InstanceUrl,
    cloud: Cloud,
    region: Option<String>,
    authority: Url,
    api_version: String,
}

/// The stored (JSON) form of a [`Connection`]: only what the builder takes.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredConnection {
    name: String,
    instance: String,
    authority: String,
    api_version: String,
    /// Accepted and ignored: connections stored by 0.1 carried request settings, which now
    /// belong to `ClientOptions`.
    #[expect(
        dead_code,
        reason = "only read by serde, to accept connections stored by 0.1"
    )]
    #[serde(default, skip_serializing)]
    request_timeout: Option<serde::de::IgnoredAny>,
    #[expect(
        dead_code,
        reason = "only read by serde, to accept connections stored by 0.1"
    )]
    #[serde(default, skip_serializing)]
    connect_timeout: Option<serde::de::IgnoredAny>,
    #[expect(
        dead_code,
        reason = "only read by serde, to accept connections stored by 0.1"
    )]
    #[serde(default, skip_serializing)]
    user_agent: Option<serde::de::IgnoredAny>,
}

impl TryFrom<StoredConnection> for Connection {
    type Error = Error;
    fn try_from(stored: StoredConnection) -> Result<Self> {
        Connection::builder(stored.name, stored.instance)
            .with_authority(stored.authority)
            .with_api_version(stored.api_version)
            .build()
    }
}

impl From<Connection> for StoredConnection {
    fn from(connection: Connection) -> Self {
        Self {
            name: connection.name,
            instance: connection.instance.into(),
            authority: connection.authority.into(),
            api_version: connection.api_version,
            request_timeout: None,
            connect_timeout: None,
            user_agent: None,
        }
    }
}

impl Connection {
    /// Starts building a connection called `name` to the instance at `instance_url`.
    pub fn builder(name: impl Into<String>, instance_url: impl Into<String>) -> ConnectionBuilder {
        ConnectionBuilder {
            name: name.into(),
            instance_url: instance_url.into(),
            authority: None,
            api_version: DEFAULT_API_VERSION.to_owned(),
        }
    }

    /// The connection's name, as the admin gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The instance this connection belongs to.
    pub fn instance(&self) -> &InstanceUrl {
        &self.instance
    }

    /// The cloud the instance lives in.
    pub fn cloud(&self) -> Cloud {
        self.cloud
    }

    /// The region code of a known commercial host (`EUR` for `crm4`), if known.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The Entra ID authority base URL, such as `https://login.microsoftonline.com/`.
    pub fn authority(&self) -> &Url {
        &self.authority
    }

    /// The Web API version, such as `v9.2`.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The Web API base URL, such as `https://contoso.crm4.dynamics.com/api/data/v9.2/`.
    pub fn web_api_base(&self) -> Url {
        let mut base = self.instance.as_url().clone();
        base.set_path(&format!("/api/data/{}/", self.api_version));
        base
    }
}

/// Builds a [`Connection`]; every setting has a documented default.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConnectionBuilder {
    name: String,
    instance_url: String,
    authority: Option<String>,
    api_version: String,
}

impl ConnectionBuilder {
    /// Names the Entra ID authority base URL (`https://login.microsoftonline.com`). Required for
    /// hosts outside the known Dynamics clouds; a loopback `http://` authority is accepted for
    /// local stand-ins. Default: derived from the cloud.
    pub fn with_authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = Some(authority.into());
        self
    }

    /// Chooses the Web API version. Default: [`DEFAULT_API_VERSION`].
    pub fn with_api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// Validates the settings and builds the connection.
    pub fn build(self) -> Result<Connection> {
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            return Err(Error::config(
                "the connection name is empty; give it a name admins recognise",
            ));
        }
        let instance = InstanceUrl::parse(&self.instance_url)?;
        let known = instance.known_host();
        let cloud = known.map_or(Cloud::Custom, |(cloud, _)| cloud);
        let authority = match (self.authority, cloud.authority_host()) {
            (Some(explicit), _) => parse_authority(&explicit)?,
            (None, Some(host)) => {
                Url::parse(&format!("https://{host}/")).expect("known host is a valid URL")
            }
            (None, None) => {
                return Err(Error::config(format!(
                    "`{}` is not a known Dynamics 365 host, so its Entra ID authority cannot be derived; name it with `with_authority`",
                    instance.host()
                )));
            }
        };
        let version = self.api_version.trim();
        let valid_version = version.len() > 1
            && version.starts_with('v')
            && version[1..].chars().all(|c| c.is_ascii_digit() || c == '.');
        if !valid_version {
            return Err(Error::config(format!(
                "`{version}` is not a Web API version; use a form such as `v9.2`"
            )));
        }
        Ok(Connection {
            name,
            instance,
            cloud,
            region: known.map(|(_, region)| region.to_owned()),
            authority,
            api_version: version.to_owned(),
        })
    }
}

/// Parses an authority base URL: https, or http on loopback; no query, user info or fragment.
fn parse_authority(input: &str) -> Result<Url> {
    let url = Url::parse(input.trim()).map_err(|e| {
        Error::config(format!(
            "the authority `{}` is not a URL ({e}); use a form such as https://login.microsoftonline.com",
            shown(input)
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(Error::config(
            "the authority must not contain user info or a query; use a form such as https://login.microsoftonline.com",
        ));
    }
    let host = url
        .host()
        .ok_or_else(|| Error::config("the authority has no host name"))?;
    let secure = url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&host));
    if !secure {
        return Err(Error::config(format!(
            "the authority on `{host}` must use https:// (plain http is accepted on loopback hosts only)"
        )));
    }
    let mut base = url;
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.set_fragment(None);
    Ok(base)
}

/// `input` for an error message, or a placeholder when it may hold credentials (`user:pw@`).
fn shown(input: &str) -> &str {
    if input.contains('@') {
        "(the given URL)"
    } else {
        input.trim()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(url: &str) -> Result<Connection> {
        Connection::builder("test", url).build()
    }

    #[test]
    fn every_known_host_derives_cloud_and_authority() {
        for (suffix, cloud, region) in KNOWN_HOSTS {
            let connection = connect(&format!("https://contoso.{suffix}")).unwrap();
            assert_eq!(connection.cloud(), *cloud, "{suffix}");
            assert_eq!(connection.region(), Some(*region), "{suffix}");
            assert_eq!(
                connection.authority().host_str(),
                cloud.authority_host(),
                "{suffix}"
            );
        }
    }

    #[test]
    fn web_api_base_uses_the_version() {
        let connection = Connection::builder("c", "https://contoso.crm4.dynamics.com/main.aspx")
            .with_api_version("v9.1")
            .build()
            .unwrap();
        assert_eq!(
            connection.web_api_base().as_str(),
            "https://contoso.crm4.dynamics.com/api/data/v9.1/"
        );
    }
}
