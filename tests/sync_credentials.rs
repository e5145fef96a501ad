//! The `sync` example's credentials: a client secret, a client certificate file, or Kubernetes
//! workload identity, and the error that lists all three when none is given.

#[path = "../examples/sync/main.rs"]
mod sync_example;

use d365_connector::ClientCredential;
use std::path::Path;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const CERTIFICATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/auth/test-only-client-certificate.pem"
);
/// The test certificate's x5t#S256, computed with openssl.
const THUMBPRINT: &str = "nMoN5QH9ZWHvbPzTvdp5ceL9qCRuphURdpH47_ZCSNs";

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
}

#[test]
fn a_certificate_file_replaces_the_secret() {
    let (app, authority) = sync_example::sign_in_from_env(&env(&[
        ("D365_URL", "https://contoso.crm4.dynamics.com"),
        ("D365_TENANT_ID", TENANT),
        ("D365_CLIENT_ID", CLIENT_ID),
        ("D365_CLIENT_CERTIFICATE", CERTIFICATE),
    ]))
    .unwrap();
    match app.credential() {
        Some(ClientCredential::Certificate(certificate)) => {
            assert_eq!(certificate.thumbprint_sha256(), THUMBPRINT)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(app.client_id(), CLIENT_ID);
    assert_eq!(authority, None);
}

#[test]
fn without_secret_or_certificate_workload_identity_is_used() {
    let (app, authority) = sync_example::sign_in_from_env(&env(&[
        ("D365_URL", "https://contoso.crm4.dynamics.com"),
        ("AZURE_CLIENT_ID", CLIENT_ID),
        ("AZURE_TENANT_ID", TENANT),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        ),
        ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"),
    ]))
    .unwrap();
    match app.credential() {
        Some(ClientCredential::FederatedTokenFile(path)) => assert_eq!(
            path,
            Path::new("/var/run/secrets/azure/tokens/azure-identity-token")
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(app.tenant().as_str(), TENANT);
    assert_eq!(
        authority.as_deref(),
        Some("https://login.microsoftonline.com/")
    );
}

#[test]
fn bad_credential_settings_name_the_problem() {
    let base = [
        ("D365_URL", "https://contoso.crm4.dynamics.com"),
        ("D365_TENANT_ID", TENANT),
        ("D365_CLIENT_ID", CLIENT_ID),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = base.to_vec();
        pairs.extend_from_slice(extra);
        sync_example::sign_in_from_env(&env(&pairs)).unwrap_err()
    };
    let (code, message) = with(&[
        ("D365_CLIENT_SECRET", "s3cret~value"),
        ("D365_CLIENT_CERTIFICATE", CERTIFICATE),
    ]);
    assert_eq!(code, 2);
    assert!(message.contains("not both"), "{message}");
    let (_, message) = with(&[("D365_CLIENT_CERTIFICATE", "/nonexistent/app.pem")]);
    assert!(
        message.starts_with("D365_CLIENT_CERTIFICATE: "),
        "{message}"
    );
    assert!(message.contains("/nonexistent/app.pem"), "{message}");
    let (_, message) = with(&[("AZURE_CLIENT_ID", CLIENT_ID)]);
    assert!(
        message.contains("AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE not set"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_credential_lists_all_three_ways() {
    let dir = std::env::temp_dir().join(format!("d365-sync-credentials-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let job = dir.join("job.json");
    std::fs::write(
        &job,
        serde_json::json!({
            "name": "Users", "source": { "entity": "systemuser" },
            "target": { "object": "User", "fields": { "Id": "id" } },
            "mode": "upsert", "identifiers": ["Id"],
            "mappings": [ { "source": "systemuserid", "target": "Id" } ]
        })
        .to_string(),
    )
    .unwrap();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let code = sync_example::run(
        ["--job".to_owned(), job.to_str().unwrap().to_owned()],
        env(&[
            ("D365_URL", "https://contoso.crm4.dynamics.com"),
            ("D365_TENANT_ID", TENANT),
            ("D365_CLIENT_ID", CLIENT_ID),
        ]),
        &mut stdout,
        &mut stderr,
    )
    .await;
    let stderr = String::from_utf8(stderr).unwrap();
    assert_eq!(code, 2, "{stderr}");
    for way in [
        "D365_CLIENT_SECRET",
        "D365_CLIENT_CERTIFICATE",
        "AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE",
    ] {
        assert!(stderr.contains(way), "{way} in {stderr}");
    }
    assert!(
        stderr.starts_with("set the environment variables D365_CLIENT_SECRET"),
        "{stderr}"
    );
}
