//! Authorize a connection against a real Dynamics 365 tenant, test it with `WhoAmI`, and save
//! the token set to a file.
//!
//! ```text
//! D365_URL=https://contoso.crm4.dynamics.com \
//! D365_TENANT_ID=contoso.onmicrosoft.com \
//! D365_CLIENT_ID=<application (client) id> \
//! cargo run --example authorize
//! ```
//!
//! Optional: `D365_CLIENT_SECRET` or `D365_CLIENT_CERTIFICATE` (a PEM file with the app's key
//! and certificate) for a confidential client, `D365_REDIRECT_URI` (default
//! `http://localhost:8400/callback`, which must be registered on the app), `D365_FLOW`
//! (`code`, the default, or `client_credentials` for an application user), `D365_TOKEN_FILE`
//! (default `d365-tokens.json`), `D365_AUTHORITY` (to override the cloud's authority).
//!
//! The code flow prints the sign-in URL; after signing in, the browser is sent back to the
//! redirect URI. With a `http://localhost:<port>` redirect URI this example listens there;
//! otherwise (or as well) paste the URL the browser ended on.

use d365_connector::{
    AuthorizationCodeAuthorizer, AuthorizeOptions, Authorizer, ClientCertificate,
    ClientCredentialsAuthorizer, ClientSecret, Connection, DataverseClient, EntraApp, Error,
    ErrorKind, Prompt, TokenSet, TokenStore, async_trait, who_am_i,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUIRED: [(&str, &str); 3] = [
    (
        "D365_URL",
        "the environment URL, such as https://contoso.crm4.dynamics.com",
    ),
    (
        "D365_TENANT_ID",
        "the directory (tenant) id or a domain such as contoso.onmicrosoft.com",
    ),
    (
        "D365_CLIENT_ID",
        "the application (client) id of the Entra ID app registration",
    ),
];

#[tokio::main]
async fn main() -> ExitCode {
    let missing: Vec<_> = REQUIRED
        .iter()
        .filter(|(name, _)| std::env::var(name).map_or(true, |v| v.trim().is_empty()))
        .collect();
    if !missing.is_empty() {
        eprintln!("Set these environment variables to authorize a connection:");
        for (name, what) in missing {
            eprintln!("  {name}: {what}");
        }
        eprintln!(
            "Optional: D365_CLIENT_SECRET or D365_CLIENT_CERTIFICATE, D365_REDIRECT_URI (default {DEFAULT_REDIRECT}), D365_FLOW (code | client_credentials), D365_TOKEN_FILE (default {DEFAULT_TOKEN_FILE}), D365_AUTHORITY"
        );
        return ExitCode::from(2);
    }
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            if let Some(code) = error.service_code() {
                eprintln!("  service code: {code}");
            }
            if let Some(id) = error.request_id() {
                eprintln!("  trace / request id (for support): {id}");
            }
            ExitCode::FAILURE
        }
    }
}

const DEFAULT_REDIRECT: &str = "http://localhost:8400/callback";
const DEFAULT_TOKEN_FILE: &str = "d365-tokens.json";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

async fn run() -> d365_connector::Result<()> {
    let instance = var("D365_URL").unwrap_or_default();
    let mut connection = Connection::builder("example", instance);
    if let Some(authority) = var("D365_AUTHORITY") {
        connection = connection.with_authority(authority);
    }
    let connection = connection.build()?;

    let redirect_uri = var("D365_REDIRECT_URI").unwrap_or_else(|| DEFAULT_REDIRECT.to_owned());
    let mut app = EntraApp::builder(
        var("D365_TENANT_ID").unwrap_or_default(),
        var("D365_CLIENT_ID").unwrap_or_default(),
    )
    .with_redirect_uri(&redirect_uri);
    if let Some(secret) = var("D365_CLIENT_SECRET") {
        app = app.with_client_secret(ClientSecret::new(secret));
    }
    if let Some(path) = var("D365_CLIENT_CERTIFICATE") {
        app = app.with_client_certificate(ClientCertificate::from_pem_file(path.trim())?);
    }
    let app = app.build()?;
    let token_file =
        PathBuf::from(var("D365_TOKEN_FILE").unwrap_or_else(|| DEFAULT_TOKEN_FILE.to_owned()));

    let flow = var("D365_FLOW").unwrap_or_else(|| "code".to_owned());
    let authorizer: Arc<dyn Authorizer> = match flow.as_str() {
        "client_credentials" => {
            let authorizer = ClientCredentialsAuthorizer::builder(&connection, app).build()?;
            authorizer.authorize().await?;
            println!("Client credentials accepted by Entra ID.");
            Arc::new(authorizer)
        }
        "code" => {
            let store = Arc::new(FileTokenStore {
                path: token_file.clone(),
            });
            let authorizer = AuthorizationCodeAuthorizer::builder(&connection, app)
                .with_token_store(store)
                .build()?;
            let request = authorizer.authorization_request(
                &AuthorizeOptions::new().with_prompt(Prompt::SelectAccount),
            )?;
            println!(
                "Open this URL in a browser and sign in:\n\n{}\n",
                request.url()
            );
            let redirect = receive_redirect(&redirect_uri).await;
            let tokens = authorizer
                .complete_authorization(request, &redirect)
                .await?;
            println!(
                "Signed in; the access token expires at {}, a refresh token was {}.",
                tokens.expires_at(),
                if tokens.refresh_token().is_some() {
                    "issued"
                } else {
                    "NOT issued (offline_access was not granted)"
                }
            );
            println!("Token set saved to {}.", token_file.display());
            Arc::new(authorizer)
        }
        other => {
            eprintln!("D365_FLOW is `{other}`; use `code` or `client_credentials`");
            std::process::exit(2);
        }
    };

    let client = DataverseClient::new(connection, authorizer)?;
    let me = who_am_i(&client).await?;
    println!("The connection works:");
    println!("  user id:          {}", me.user_id);
    println!("  business unit id: {}", me.business_unit_id);
    println!("  organization id:  {}", me.organization_id);
    Ok(())
}

/// The redirect URL: from a listener on a `http://localhost:<port>` redirect URI, or pasted on
/// standard input, whichever comes first.
async fn receive_redirect(redirect_uri: &str) -> String {
    let listener = match url::Url::parse(redirect_uri) {
        Ok(url) if url.scheme() == "http" => {
            let port = url.port_or_known_default().unwrap_or(80);
            tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .ok()
        }
        _ => None,
    };
    match &listener {
        Some(_) => println!(
            "Waiting for the browser on {redirect_uri} (or paste the URL the browser ended on here):"
        ),
        None => println!("Paste the URL the browser ended on here:"),
    }
    // A plain thread, not tokio's stdin: a blocked read must not keep the process alive.
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = sender.send(line.trim().to_owned());
    });
    let pasted = async { receiver.await.unwrap_or_default() };
    match listener {
        Some(listener) => tokio::select! {
            line = pasted => line,
            Some(target) = accept_one(listener) => target,
        },
        None => pasted.await,
    }
}

/// Accepts one HTTP request and returns its target (`/callback?code=...&state=...`).
async fn accept_one(listener: tokio::net::TcpListener) -> Option<String> {
    let (mut socket, _) = listener.accept().await.ok()?;
    let mut buffer = vec![0u8; 16 * 1024];
    let mut read = 0;
    while read < buffer.len() {
        let n = socket.read(&mut buffer[read..]).await.ok()?;
        if n == 0 {
            break;
        }
        read += n;
        if buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buffer[..read]);
    let target = head.lines().next()?.split_whitespace().nth(1)?.to_owned();
    let body = "<html><body>Sign-in received. You can close this window.</body></html>";
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    Some(target)
}

/// A token store in a JSON file, readable by the owner only. A real host keeps tokens
/// encrypted, in its own database or secret store.
#[derive(Debug)]
struct FileTokenStore {
    path: PathBuf,
}

impl FileTokenStore {
    /// A `Store` error naming the file and what could not be done with it.
    fn error(
        &self,
        doing: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::new(
            ErrorKind::Store,
            format!(
                "the token file {} could not be {doing}",
                self.path.display()
            ),
        )
        .with_source(source)
    }

    async fn write(&self, json: &[u8]) -> std::io::Result<()> {
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(&self.path).await?;
        file.write_all(json).await?;
        file.flush().await
    }
}

#[async_trait]
impl TokenStore for FileTokenStore {
    async fn load(&self) -> d365_connector::Result<Option<TokenSet>> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.error("read as a token set (delete it and sign in again)", e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error("read", e)),
        }
    }

    async fn save(&self, tokens: &TokenSet) -> d365_connector::Result<()> {
        let json = serde_json::to_vec_pretty(tokens).map_err(|e| self.error("written", e))?;
        self.write(&json)
            .await
            .map_err(|e| self.error("written", e))
    }

    async fn clear(&self) -> d365_connector::Result<()> {
        match tokio::fs::remove_file(&self.path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.error("removed", e)),
            _ => Ok(()),
        }
    }
}
