//! Entra ID (v2.0 endpoints): `authorize` with PKCE, and `token` for the client credentials,
//! authorization code and refresh token grants.

use super::StandIn;
use super::reply::Reply;
use super::state::{PendingCode, State, TokenState};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use url::Url;

/// Whether the stand-in accepts `tenant` in the endpoint path.
fn tenant_known(tenant: &str) -> bool {
    tenant.eq_ignore_ascii_case(StandIn::TENANT_ID) || matches!(tenant, "organizations" | "common")
}

/// A refusal from the token endpoint: the HTTP status, the `error`, the `AADSTS` number and
/// its description.
struct AadError {
    status: u16,
    error: &'static str,
    code: u32,
    description: String,
}

impl AadError {
    fn new(status: u16, error: &'static str, code: u32, description: impl Into<String>) -> Self {
        AadError {
            status,
            error,
            code,
            description: description.into(),
        }
    }

    /// `400 invalid_grant`.
    fn invalid_grant(code: u32, description: impl Into<String>) -> Self {
        Self::new(400, "invalid_grant", code, description)
    }

    /// The Entra error response, with fresh trace and correlation ids.
    fn into_reply(self, state: &mut State) -> Reply {
        let AadError {
            status,
            error,
            code,
            description,
        } = self;
        let trace = state.guid();
        let correlation = state.guid();
        let now = chrono::Utc::now();
        let body = json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {}",
                now.format("%Y-%m-%d %H:%M:%SZ")
            ),
            "error_codes": [code],
            "timestamp": now.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        });
        Reply {
            status,
            content_type: "application/json; charset=utf-8",
            headers: vec![("Cache-Control".to_owned(), "no-store, no-cache".to_owned())],
            body: body.to_string(),
        }
    }
}

/// The resource scopes in `scope` that name this instance, or the first one that does not.
fn check_scopes(state: &State, scope: &str) -> Result<Vec<String>, String> {
    let mut resource_scopes = Vec::new();
    for s in scope.split_whitespace() {
        if matches!(s, "offline_access" | "openid" | "profile" | "email") {
            continue;
        }
        let known = [".default", "user_impersonation"].iter().any(|suffix| {
            s.strip_suffix(suffix)
                .map(|r| r.trim_end_matches('/'))
                .is_some_and(|r| r.eq_ignore_ascii_case(&state.base_url))
        });
        if !known {
            return Err(s.to_owned());
        }
        resource_scopes.push(s.to_owned());
    }
    Ok(resource_scopes)
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) fn token(
    state: &mut State,
    tenant: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Reply {
    state.token_requests += 1;
    match grant(state, tenant, authorization, body) {
        Ok(reply) => reply,
        Err(error) => error.into_reply(state),
    }
}

/// The token request's tenant and client checked, the tokens of its grant.
fn grant(
    state: &mut State,
    tenant: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<Reply, AadError> {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    if !tenant_known(tenant) {
        return Err(AadError::new(
            400,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        ));
    }
    let has_secret = authenticate_client(&form, authorization, tenant)?;
    let scope = form.get("scope").cloned().unwrap_or_default();
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => client_credentials(state, tenant, has_secret, &scope),
        Some("authorization_code") => authorization_code(state, &form),
        Some("refresh_token") => refresh_token(state, tenant, &form, &scope),
        Some(other) => Err(AadError::new(
            400,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
        None => Err(AadError::new(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        )),
    }
}

/// Checks the client id and, when one is sent, the secret (in the form, or as
/// client_secret_basic); returns whether a secret was sent.
fn authenticate_client(
    form: &HashMap<String, String>,
    authorization: Option<&str>,
    tenant: &str,
) -> Result<bool, AadError> {
    let basic = authorization
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(basic_credentials);
    let (basic_id, basic_secret) = basic.unzip();
    let client_id = form.get("client_id").cloned().or(basic_id);
    let client_secret = form.get("client_secret").cloned().or(basic_secret);
    let Some(client_id) = client_id else {
        return Err(AadError::new(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        ));
    };
    if client_id != StandIn::CLIENT_ID {
        return Err(AadError::new(
            400,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        ));
    }
    if client_secret
        .as_deref()
        .is_some_and(|s| s != StandIn::CLIENT_SECRET)
    {
        return Err(AadError::new(
            401,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ));
    }
    Ok(client_secret.is_some())
}

/// The client id and secret of an `Authorization: Basic` value.
fn basic_credentials(basic: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(basic.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// The client credentials grant: an application token for `<instance>/.default`.
fn client_credentials(
    state: &mut State,
    tenant: &str,
    has_secret: bool,
    scope: &str,
) -> Result<Reply, AadError> {
    if !has_secret {
        return Err(AadError::new(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    }
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    if scopes.len() != 1 || !scopes[0].ends_with("/.default") {
        return Err(AadError::new(
            400,
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    }
    if check_scopes(state, scope).is_err() {
        let resource = scope.trim_end_matches("/.default");
        return Err(AadError::new(
            400,
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            ),
        ));
    }
    let access = state.new_access_token(StandIn::APPLICATION_USER_ID);
    Ok(success(json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": access,
    })))
}

/// The authorization code grant: the code redeemed once, by the redirect URI and PKCE verifier
/// it was issued for.
fn authorization_code(
    state: &mut State,
    form: &HashMap<String, String>,
) -> Result<Reply, AadError> {
    let code = form.get("code").cloned().unwrap_or_default();
    let Some(pending) = state.codes.get(&code).cloned() else {
        return Err(AadError::invalid_grant(
            70000,
            "Provided grant is invalid or malformed.",
        ));
    };
    check_redemption(&pending, form)?;
    if let Some(entry) = state.codes.get_mut(&code) {
        entry.redeemed = true;
    }
    Ok(user_tokens(state, &pending.scope))
}

/// Refuses a code redeemed before, or with another redirect URI or a wrong verifier.
fn check_redemption(pending: &PendingCode, form: &HashMap<String, String>) -> Result<(), AadError> {
    if pending.redeemed {
        return Err(AadError::invalid_grant(
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        ));
    }
    let redirect = form.get("redirect_uri").cloned().unwrap_or_default();
    if redirect != pending.redirect_uri {
        return Err(AadError::invalid_grant(
            500112,
            format!(
                "The reply address '{redirect}' does not match the reply address '{}' provided when requesting Authorization code.",
                pending.redirect_uri
            ),
        ));
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != pending.code_challenge {
        return Err(AadError::invalid_grant(
            50148,
            "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
        ));
    }
    Ok(())
}

/// The refresh token grant: the presented token is rotated (revoked, a new one issued).
fn refresh_token(
    state: &mut State,
    tenant: &str,
    form: &HashMap<String, String>,
    scope: &str,
) -> Result<Reply, AadError> {
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    let granted = match state.refresh_tokens.get(&presented) {
        Some((TokenState::Valid, granted)) => granted.clone(),
        _ => {
            return Err(AadError::invalid_grant(
                70008,
                "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
            ));
        }
    };
    if let Err(bad) = check_scopes(state, scope) {
        return Err(AadError::new(
            400,
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {bad} was not found in the tenant named {tenant}."
            ),
        ));
    }
    if let Some(entry) = state.refresh_tokens.get_mut(&presented) {
        entry.0 = TokenState::Revoked;
    }
    // A refresh keeps offline access even when the scope parameter leaves it out.
    let scope = if scope.trim().is_empty() {
        granted
    } else {
        format!("{scope} offline_access")
    };
    Ok(user_tokens(state, &scope))
}

/// Tokens for a signed-in user: access token, plus a refresh token with `offline_access`.
fn user_tokens(state: &mut State, scope: &str) -> Reply {
    let access = state.new_access_token(StandIn::USER_ID);
    let granted: Vec<&str> = scope
        .split_whitespace()
        .filter(|s| !matches!(*s, "offline_access" | "openid" | "profile" | "email"))
        .collect();
    let mut body = json!({
        "token_type": "Bearer",
        "scope": granted.join(" "),
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": access,
    });
    if scope.split_whitespace().any(|s| s == "offline_access") {
        body["refresh_token"] = json!(state.new_refresh_token(scope));
    }
    success(body)
}

fn success(body: serde_json::Value) -> Reply {
    Reply {
        status: 200,
        content_type: "application/json; charset=utf-8",
        headers: vec![("Cache-Control".to_owned(), "no-store, no-cache".to_owned())],
        body: body.to_string(),
    }
}

/// Records a code as if the user signed in and consented.
pub(crate) fn issue_code(
    state: &mut State,
    redirect_uri: &str,
    code_challenge: &str,
    scope: &str,
) -> String {
    let code = format!("1.AR-code.{}", state.opaque());
    state.codes.insert(
        code.clone(),
        PendingCode {
            redirect_uri: redirect_uri.to_owned(),
            code_challenge: code_challenge.to_owned(),
            scope: scope.to_owned(),
            redeemed: false,
        },
    );
    code
}

/// `GET /{tenant}/oauth2/v2.0/authorize`: signs the user in at once and redirects back with a
/// code (or an error, as Entra does once the redirect URI is known).
pub(crate) fn authorize(state: &mut State, tenant: &str, url: &Url) -> Reply {
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let (redirect_text, mut location) = match redirect_target(tenant, &q) {
        Ok(target) => target,
        Err(text) => return sign_in_page(400, text),
    };
    {
        let mut pairs = location.query_pairs_mut();
        let scope = q.get("scope").cloned().unwrap_or_default();
        match authorize_error(state, &q, &scope) {
            Some((error, description)) => {
                pairs.append_pair("error", error);
                pairs.append_pair("error_description", description);
            }
            None => {
                let challenge = q.get("code_challenge").cloned().unwrap_or_default();
                let code = issue_code(state, &redirect_text, &challenge, &scope);
                pairs.append_pair("code", &code);
            }
        }
        if let Some(s) = q.get("state") {
            pairs.append_pair("state", s);
        }
    }
    Reply {
        status: 302,
        content_type: "text/html; charset=utf-8",
        headers: vec![("Location".to_owned(), location.to_string())],
        body: String::new(),
    }
}

/// The redirect URI of an authorize request (as sent, and parsed), once its tenant and client
/// are known; else the text of the sign-in page's error.
fn redirect_target(tenant: &str, q: &HashMap<String, String>) -> Result<(String, Url), String> {
    if !tenant_known(tenant) {
        return Err(format!("AADSTS90002: Tenant '{tenant}' not found."));
    }
    if q.get("client_id").map(String::as_str) != Some(StandIn::CLIENT_ID) {
        return Err(
            "AADSTS700016: Application with identifier was not found in the directory.".to_owned(),
        );
    }
    q.get("redirect_uri")
        .and_then(|r| Url::parse(r).ok().map(|u| (r.clone(), u)))
        .ok_or_else(|| {
            "AADSTS900144: The request body must contain the following parameter: 'redirect_uri'."
                .to_owned()
        })
}

/// The error (`error`, `error_description`) an authorize request is redirected back with,
/// if any.
fn authorize_error(
    state: &State,
    q: &HashMap<String, String>,
    scope: &str,
) -> Option<(&'static str, &'static str)> {
    if q.get("response_type").map(String::as_str) != Some("code") {
        Some((
            "unsupported_response_type",
            "AADSTS700054: response_type 'code' is required.",
        ))
    } else if q.get("code_challenge_method").map(String::as_str) != Some("S256")
        || !q.contains_key("code_challenge")
    {
        Some((
            "invalid_request",
            "AADSTS9002325: Proof Key for Code Exchange is required for cross-origin authorization code redemption.",
        ))
    } else if check_scopes(state, scope).is_err() {
        Some((
            "invalid_client",
            "AADSTS650053: The application asked for a scope that doesn't exist on the resource.",
        ))
    } else {
        None
    }
}

/// The sign-in page Entra shows when it cannot redirect back.
fn sign_in_page(status: u16, text: String) -> Reply {
    Reply {
        status,
        content_type: "text/html; charset=utf-8",
        headers: Vec::new(),
        body: format!("<html><body><h1>Sign in</h1><p>{text}</p></body></html>"),
    }
}
