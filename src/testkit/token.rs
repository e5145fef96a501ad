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

/// An Entra error response.
fn aad_error(state: &mut State, status: u16, error: &str, code: u32, description: &str) -> Reply {
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
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    if !tenant_known(tenant) {
        return aad_error(
            state,
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    // client_secret_basic is accepted as well as client_secret_post.
    let mut client_id = form.get("client_id").cloned();
    let mut client_secret = form.get("client_secret").cloned();
    if let Some(basic) = authorization.and_then(|a| a.strip_prefix("Basic ")) {
        if let Some((id, secret)) = STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(i, p)| (i.to_owned(), p.to_owned())))
        {
            client_id.get_or_insert(id);
            client_secret.get_or_insert(secret);
        }
    }
    let Some(client_id) = client_id else {
        return aad_error(
            state,
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    if client_id != StandIn::CLIENT_ID {
        return aad_error(
            state,
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    }
    if client_secret
        .as_deref()
        .is_some_and(|s| s != StandIn::CLIENT_SECRET)
    {
        return aad_error(
            state,
            401,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        );
    }
    let scope = form.get("scope").cloned().unwrap_or_default();
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            if client_secret.is_none() {
                return aad_error(
                    state,
                    401,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                );
            }
            let scopes: Vec<&str> = scope.split_whitespace().collect();
            if scopes.len() != 1 || !scopes[0].ends_with("/.default") {
                return aad_error(
                    state,
                    400,
                    "invalid_scope",
                    1002012,
                    &format!(
                        "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                );
            }
            if check_scopes(state, &scope).is_err() {
                let resource = scope.trim_end_matches("/.default").to_owned();
                return aad_error(
                    state,
                    400,
                    "invalid_resource",
                    500011,
                    &format!(
                        "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
                    ),
                );
            }
            let access = state.new_access_token(StandIn::APPLICATION_USER_ID);
            success(json!({
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": access,
            }))
        }
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(pending) = state.codes.get(&code).cloned() else {
                return aad_error(
                    state,
                    400,
                    "invalid_grant",
                    70000,
                    "Provided grant is invalid or malformed.",
                );
            };
            if pending.redeemed {
                return aad_error(
                    state,
                    400,
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                );
            }
            let redirect = form.get("redirect_uri").cloned().unwrap_or_default();
            if redirect != pending.redirect_uri {
                return aad_error(
                    state,
                    400,
                    "invalid_grant",
                    500112,
                    &format!(
                        "The reply address '{redirect}' does not match the reply address '{}' provided when requesting Authorization code.",
                        pending.redirect_uri
                    ),
                );
            }
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != pending.code_challenge
            {
                return aad_error(
                    state,
                    400,
                    "invalid_grant",
                    50148,
                    "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
                );
            }
            if let Some(entry) = state.codes.get_mut(&code) {
                entry.redeemed = true;
            }
            user_tokens(state, &pending.scope)
        }
        Some("refresh_token") => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            let granted = match state.refresh_tokens.get(&presented) {
                Some((TokenState::Valid, granted)) => granted.clone(),
                _ => {
                    return aad_error(
                        state,
                        400,
                        "invalid_grant",
                        70008,
                        "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
                    );
                }
            };
            if let Err(bad) = check_scopes(state, &scope) {
                return aad_error(
                    state,
                    400,
                    "invalid_resource",
                    500011,
                    &format!(
                        "The resource principal named {bad} was not found in the tenant named {tenant}."
                    ),
                );
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
            user_tokens(state, &scope)
        }
        Some(other) => aad_error(
            state,
            400,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        ),
        None => aad_error(
            state,
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        ),
    }
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
    let page = |status: u16, text: String| Reply {
        status,
        content_type: "text/html; charset=utf-8",
        headers: Vec::new(),
        body: format!("<html><body><h1>Sign in</h1><p>{text}</p></body></html>"),
    };
    if !tenant_known(tenant) {
        return page(400, format!("AADSTS90002: Tenant '{tenant}' not found."));
    }
    if q.get("client_id").map(String::as_str) != Some(StandIn::CLIENT_ID) {
        return page(
            400,
            "AADSTS700016: Application with identifier was not found in the directory.".to_owned(),
        );
    }
    let Some((redirect_text, redirect)) = q
        .get("redirect_uri")
        .and_then(|r| Url::parse(r).ok().map(|u| (r.clone(), u)))
    else {
        return page(
            400,
            "AADSTS900144: The request body must contain the following parameter: 'redirect_uri'."
                .to_owned(),
        );
    };
    let mut location = redirect.clone();
    {
        let mut pairs = location.query_pairs_mut();
        let scope = q.get("scope").cloned().unwrap_or_default();
        let error = if q.get("response_type").map(String::as_str) != Some("code") {
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
        } else if check_scopes(state, &scope).is_err() {
            Some((
                "invalid_client",
                "AADSTS650053: The application asked for a scope that doesn't exist on the resource.",
            ))
        } else {
            None
        };
        match error {
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
