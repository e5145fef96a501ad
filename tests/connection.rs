//! Connection: instance URL validation, clouds, authorities and settings.

use d365_connector::{
    AccessToken, ClientOptions, Cloud, Connection, DataverseClient, ErrorKind,
    StaticTokenAuthorizer,
};
use std::sync::Arc;
use std::time::Duration;

fn build(url: &str) -> d365_connector::Result<Connection> {
    Connection::builder("Contoso", url).build()
}

#[test]
fn commercial_hosts_derive_region_and_authority() {
    let connection = build("https://contoso.crm4.dynamics.com").unwrap();
    assert_eq!(connection.cloud(), Cloud::Commercial);
    assert_eq!(connection.region(), Some("EUR"));
    assert_eq!(
        connection.authority().as_str(),
        "https://login.microsoftonline.com/"
    );
    assert_eq!(
        connection.web_api_base().as_str(),
        "https://contoso.crm4.dynamics.com/api/data/v9.2/"
    );
    assert_eq!(connection.name(), "Contoso");
}

#[test]
fn every_commercial_region_of_the_notes_is_recognised() {
    for (host, region) in [
        ("crm", "NAM"),
        ("crm2", "SAM"),
        ("crm3", "CAN"),
        ("crm4", "EUR"),
        ("crm5", "APJ"),
        ("crm6", "OCE"),
        ("crm7", "JPN"),
        ("crm8", "IND"),
        ("crm9", "GCC"),
        ("crm11", "GBR"),
        ("crm12", "FRA"),
        ("crm14", "ZAF"),
        ("crm15", "UAE"),
        ("crm16", "GER"),
        ("crm17", "CHE"),
        ("crm19", "NOR"),
        ("crm20", "SGP"),
        ("crm21", "KOR"),
    ] {
        let connection = build(&format!("https://contoso.{host}.dynamics.com")).unwrap();
        assert_eq!(connection.cloud(), Cloud::Commercial, "{host}");
        assert_eq!(connection.region(), Some(region), "{host}");
        assert_eq!(
            connection.authority().as_str(),
            "https://login.microsoftonline.com/",
            "{host}"
        );
    }
    let error = build("https://contoso.crm99.dynamics.com").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("with_authority"), "{error}");
}

#[test]
fn sovereign_hosts_use_their_own_authorities() {
    for (url, cloud, authority) in [
        (
            "https://contoso.crm.microsoftdynamics.us",
            Cloud::UsGovHigh,
            "login.microsoftonline.us",
        ),
        (
            "https://contoso.crm.appsplatform.us",
            Cloud::UsGovDod,
            "login.microsoftonline.us",
        ),
        (
            "https://contoso.crm.dynamics.cn",
            Cloud::China,
            "login.partner.microsoftonline.cn",
        ),
        (
            "https://contoso.crm.microsoftdynamics.de",
            Cloud::GermanyLegacy,
            "login.microsoftonline.de",
        ),
        (
            "https://contoso.crm9.dynamics.com",
            Cloud::Commercial,
            "login.microsoftonline.com",
        ),
    ] {
        let connection = build(url).unwrap();
        assert_eq!(connection.cloud(), cloud, "{url}");
        assert_eq!(connection.authority().host_str(), Some(authority), "{url}");
    }
}

#[test]
fn trailing_slash_paths_and_fragments_are_dropped() {
    for url in [
        "https://contoso.crm.dynamics.com",
        "https://contoso.crm.dynamics.com/",
        "https://contoso.crm.dynamics.com/main.aspx",
        "https://contoso.crm.dynamics.com/main.aspx#etc",
        "  https://CONTOSO.crm.dynamics.com/  ",
    ] {
        let connection = build(url).unwrap();
        assert_eq!(
            connection.instance().as_url().as_str(),
            "https://contoso.crm.dynamics.com/",
            "{url}"
        );
        assert_eq!(
            connection.instance().resource(),
            "https://contoso.crm.dynamics.com"
        );
    }
}

#[test]
fn invalid_urls_are_refused_with_the_reason() {
    for (url, reason) in [
        ("", "empty"),
        ("   ", "empty"),
        ("contoso", "not a URL"),
        ("not a url at all", "not a URL"),
        ("http://contoso.crm.dynamics.com", "https://"),
        ("ftp://contoso.crm.dynamics.com", "scheme `ftp`"),
        ("https://admin:pw@contoso.crm.dynamics.com", "user info"),
        (
            "https://contoso.crm.dynamics.com/?pagetype=entitylist",
            "query",
        ),
        ("https://contoso.example.com", "with_authority"),
    ] {
        let error = build(url).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{url}");
        assert!(error.to_string().contains(reason), "{url}: {error}");
    }
    let error = build("https://admin:pw@contoso.crm.dynamics.com").unwrap_err();
    assert!(!format!("{error} {error:?}").contains("pw@"));
}

#[test]
fn http_is_accepted_on_loopback_only() {
    for url in [
        "http://127.0.0.1:8080",
        "http://localhost:3000",
        "http://[::1]:9000",
    ] {
        let connection = Connection::builder("local", url)
            .with_authority(url)
            .build()
            .unwrap();
        assert_eq!(connection.cloud(), Cloud::Custom, "{url}");
    }
    let error = Connection::builder("lan", "http://10.0.0.5")
        .with_authority("http://10.0.0.5")
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("loopback"), "{error}");
}

#[test]
fn other_https_hosts_need_an_explicit_authority() {
    let connection = Connection::builder("proxy", "https://crm.contoso.internal")
        .with_authority("https://login.microsoftonline.com")
        .build()
        .unwrap();
    assert_eq!(connection.cloud(), Cloud::Custom);
    assert_eq!(
        connection.authority().as_str(),
        "https://login.microsoftonline.com/"
    );

    let error = Connection::builder("proxy", "https://crm.contoso.internal")
        .with_authority("http://login.example.com")
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("authority"), "{error}");
}

#[test]
fn settings_have_documented_defaults_and_can_be_changed() {
    let default = build("https://contoso.crm.dynamics.com").unwrap();
    assert_eq!(default.api_version(), d365_connector::DEFAULT_API_VERSION);

    let custom = Connection::builder("c", "https://contoso.crm.dynamics.com")
        .with_api_version("v9.1")
        .build()
        .unwrap();
    assert_eq!(custom.web_api_base().path(), "/api/data/v9.1/");

    for bad in ["9.2", "v", "v9.2; drop", ""] {
        let error = Connection::builder("c", "https://contoso.crm.dynamics.com")
            .with_api_version(bad)
            .build()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{bad}");
        assert!(
            error.to_string().contains("Web API version"),
            "{bad}: {error}"
        );
    }
}

#[test]
fn a_connection_round_trips_through_json_and_revalidates() {
    let connection = build("https://contoso.crm4.dynamics.com").unwrap();
    let json = serde_json::to_string(&connection).unwrap();
    let back: Connection = serde_json::from_str(&json).unwrap();
    assert_eq!(back, connection);

    let stored: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(stored["instance"], "https://contoso.crm4.dynamics.com/");
    assert_eq!(stored["authority"], "https://login.microsoftonline.com/");
    assert_eq!(stored["api_version"], "v9.2");

    for (field, tampered) in [
        ("instance", "http://contoso.crm4.dynamics.com"),
        ("authority", "http://evil.example/x?y=1"),
        ("api_version", "v9.2/../../../evil"),
        ("name", " "),
    ] {
        let mut bad = stored.clone();
        bad[field] = serde_json::Value::from(tampered);
        let error = serde_json::from_value::<Connection>(bad).unwrap_err();
        assert!(!error.to_string().is_empty(), "{field}");
    }
    let mut stored_by_0_1 = stored.clone();
    stored_by_0_1["request_timeout"] = serde_json::Value::from(120);
    stored_by_0_1["user_agent"] = serde_json::Value::from("acme-sync/2.0");
    assert_eq!(
        serde_json::from_value::<Connection>(stored_by_0_1).unwrap(),
        connection,
        "request settings stored by 0.1 are accepted and left to ClientOptions"
    );
    let mut misspelt = stored.clone();
    misspelt["api_verison"] = serde_json::Value::from("v9.2");
    assert!(serde_json::from_value::<Connection>(misspelt).is_err());
}

#[test]
fn client_options_have_documented_defaults_and_refuse_zero_timeouts() {
    let options = ClientOptions::default();
    assert_eq!(
        options.request_timeout(),
        d365_connector::DEFAULT_REQUEST_TIMEOUT
    );
    assert_eq!(
        options.connect_timeout(),
        d365_connector::DEFAULT_CONNECT_TIMEOUT
    );
    assert_eq!(options.user_agent(), d365_connector::DEFAULT_USER_AGENT);
    assert_eq!(
        options.max_concurrency(),
        d365_connector::DEFAULT_MAX_CONCURRENCY
    );
    assert_eq!(
        options.retry_policy().throttle_budget(),
        Duration::from_secs(30 * 60)
    );

    let connection = build("https://contoso.crm.dynamics.com").unwrap();
    let token = Arc::new(StaticTokenAuthorizer::new(AccessToken::new("t")));
    let zero = ClientOptions::default().with_request_timeout(Duration::ZERO);
    let error = DataverseClient::with_options(connection, token, zero).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("timeout"), "{error}");
}
