//! The authorization endpoint: validates the request, shows the sign-in page
//! and issues single-use codes.
//!
//! Until the client and redirect URI are known good, errors are shown as a
//! page and never redirected (RFC 6749 §4.1.2.1), so this endpoint cannot be
//! used as an open redirector.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::jws::{random_token, subject_for};
use super::pages::{self, SignIn};
use super::params::{DUPLICATE, Params};
use super::{CODE_TTL, CodeEntry, CodeGrant, DevProvider, MAX_STATE_LEN, User, unix_now};

const MAX_NONCE_LEN: usize = 512;
const MAX_SCOPE_LEN: usize = 1024;
const MAX_NAME_LEN: usize = 100;
const MAX_EMAIL_LEN: usize = 254;
const MAX_ACR_LEN: usize = 100;
const SUPPORTED_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// A validated authorization request.
struct AuthRequest {
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    /// The requested scopes we support, as granted.
    scope: String,
    /// The first of the requested `acr_values`: what the sign-in form offers.
    acr: Option<String>,
}

/// Why an authorization request was refused, and how to say so.
enum Refusal {
    /// The client or redirect URI cannot be trusted: show a page.
    Page(&'static str),
    /// Send the user-agent back to the client with an OAuth error.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: &'static str,
    },
}

/// `GET /authorize`: validate the request and show the sign-in page.
pub(super) async fn show(State(dev): State<DevProvider>, RawQuery(query): RawQuery) -> Response {
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(_) => return refuse(&dev, Refusal::Page(DUPLICATE)),
    };
    match validate(&dev, &params) {
        Ok(req) => {
            let acr = req.acr.clone();
            sign_in_page(&dev, &req, "Ada Lovelace", "ada@example.com", acr.as_deref(), None)
        }
        Err(refusal) => refuse(&dev, refusal),
    }
}

/// `POST /authorize`: the sign-in form was submitted (sign in or cancel).
pub(super) async fn submit(State(dev): State<DevProvider>, body: Bytes) -> Response {
    let params = match Params::parse(&body) {
        Ok(params) => params,
        Err(_) => return refuse(&dev, Refusal::Page(DUPLICATE)),
    };
    // The hidden fields came back from the browser: trust none of them.
    let req = match validate(&dev, &params) {
        Ok(req) => req,
        Err(refusal) => return refuse(&dev, refusal),
    };
    match params.get("action") {
        Some("cancel") => {
            tracing::info!("dev provider: sign-in cancelled");
            back_to_client(&dev, &req.redirect_uri, &[("error", "access_denied")], &req.state)
        }
        Some("sign_in") => sign_in(&dev, req, &params),
        _ => pages::error_page("The form was submitted without choosing Sign in or Cancel."),
    }
}

/// Checks the user's name and email, then issues a code and redirects.
fn sign_in(dev: &DevProvider, req: AuthRequest, params: &Params) -> Response {
    let name = params.get("name").unwrap_or_default().trim();
    let email = params.get("email").unwrap_or_default().trim();
    let acr = params.get("acr").unwrap_or_default().trim();
    let problem = if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        Some("Please enter a name of at most 100 characters.")
    } else if name.chars().any(char::is_control) {
        Some("The name cannot contain control characters.")
    } else if !plausible_email(email) {
        Some("Please enter an email address such as ada@example.com.")
    } else if acr.len() > MAX_ACR_LEN || acr.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("The acr must be one word of at most 100 characters.")
    } else {
        None
    };
    if let Some(problem) = problem {
        return sign_in_page(dev, &req, name, email, Some(acr), Some(problem));
    }

    let user = User {
        sub: subject_for(email),
        name: name.to_owned(),
        email: email.to_owned(),
        acr: (!acr.is_empty()).then(|| acr.to_owned()),
    };
    tracing::info!(sub = %user.sub, "dev provider: signed in, code issued");
    // 256 bits: far beyond guessing within the code's 60 seconds.
    let code = random_token(32);
    let grant = CodeGrant {
        client_id: dev.client().client_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        nonce: req.nonce,
        code_challenge: req.code_challenge,
        scope: req.scope,
        user,
        sid: random_token(16),
        auth_time: unix_now(),
    };
    dev.codes()
        .insert(code.clone(), CodeEntry::Issued(Box::new(grant)), CODE_TTL);
    back_to_client(dev, &req.redirect_uri, &[("code", &code)], &req.state)
}

/// Validates an authorization request, from the query or the posted form.
fn validate(dev: &DevProvider, params: &Params) -> Result<AuthRequest, Refusal> {
    let client = dev.client();
    match params.get("client_id") {
        None => return Err(Refusal::Page("The request has no client_id.")),
        Some(id) if id != client.client_id => {
            return Err(Refusal::Page("The client_id is not registered with this provider."));
        }
        Some(_) => {}
    }
    let redirect_uri = match params.get("redirect_uri") {
        None => return Err(Refusal::Page("The request has no redirect_uri.")),
        Some(uri) if !client.redirect_uris.iter().any(|r| r == uri) => {
            return Err(Refusal::Page(
                "The redirect_uri is not registered for this client (exact match required).",
            ));
        }
        Some(uri) => uri.to_owned(),
    };

    // From here on, errors go back to the client.
    let state = params.get("state").map(str::to_owned);
    let too_long_state = state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN);
    let refuse = |error, description| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: if too_long_state { None } else { state.clone() },
        error,
        description,
    };
    if too_long_state {
        return Err(refuse("invalid_request", "state is too long"));
    }
    if params.get("request").is_some() {
        return Err(refuse("request_not_supported", "request objects are not supported"));
    }
    if params.get("request_uri").is_some() {
        return Err(refuse("request_uri_not_supported", "request_uri is not supported"));
    }
    match params.get("response_type") {
        Some("code") => {}
        None => return Err(refuse("invalid_request", "response_type is required")),
        Some(_) => {
            return Err(refuse("unsupported_response_type", "only response_type=code"));
        }
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(refuse("invalid_request", "only response_mode=query is supported"));
    }
    let scope = params.get("scope").unwrap_or_default();
    if scope.len() > MAX_SCOPE_LEN || !scope.split(' ').any(|s| s == "openid") {
        return Err(refuse("invalid_scope", "scope must include openid"));
    }
    let nonce = params.get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE_LEN) {
        return Err(refuse("invalid_request", "nonce is too long"));
    }
    if params.get("code_challenge_method") != Some("S256") {
        return Err(refuse(
            "invalid_request",
            "PKCE with code_challenge_method=S256 is required",
        ));
    }
    let code_challenge = match params.get("code_challenge") {
        Some(c) if is_pkce_value(c) => c.to_owned(),
        _ => {
            return Err(refuse("invalid_request", "a valid code_challenge is required"));
        }
    };
    // There is never a session here, so a silent sign-in cannot succeed.
    if params.get("prompt").is_some_and(|p| p.split(' ').any(|v| v == "none")) {
        return Err(refuse("login_required", "the user must sign in"));
    }

    let mut granted: Vec<&str> = Vec::new();
    for s in scope.split(' ').filter(|s| SUPPORTED_SCOPES.contains(s)) {
        if !granted.contains(&s) {
            granted.push(s);
        }
    }
    // The form offers the first requested acr (the page is where the
    // "stronger" sign-in happens); `max_age` and `prompt=login` need nothing:
    // there is never a session here, so the form is always shown.
    let acr = params
        .get("acr_values")
        .and_then(|v| v.split(' ').find(|v| !v.is_empty()))
        .filter(|v| v.len() <= MAX_ACR_LEN)
        .map(str::to_owned);
    Ok(AuthRequest {
        redirect_uri,
        state,
        nonce,
        code_challenge,
        scope: granted.join(" "),
        acr,
    })
}

/// RFC 7636 §4.1: 43 to 128 characters from the unreserved set.
pub(super) fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Good enough for a test double: one `@` with text on both sides, no spaces.
fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= MAX_EMAIL_LEN
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn sign_in_page(
    dev: &DevProvider,
    req: &AuthRequest,
    name: &str,
    email: &str,
    acr: Option<&str>,
    error: Option<&str>,
) -> Response {
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let action = dev.endpoint("/authorize");
    let page = SignIn {
        action: &action,
        client_id: &dev.client().client_id,
        redirect_uri: &req.redirect_uri,
        scope: &req.scope,
        code_challenge: &req.code_challenge,
        state: req.state.as_deref(),
        nonce: req.nonce.as_deref(),
        name,
        email,
        acr: acr.unwrap_or_default(),
        error,
    };
    pages::html(status, &page)
}

fn refuse(dev: &DevProvider, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(message) => {
            tracing::info!(reason = message, "dev provider: authorization request refused");
            pages::error_page(message)
        }
        Refusal::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => {
            tracing::info!(error, reason = description, "dev provider: authorization error");
            let pairs = [("error", error), ("error_description", description)];
            back_to_client(dev, &redirect_uri, &pairs, &state)
        }
    }
}

/// 303 to the client's registered redirect URI with the response
/// parameters, its `state` and our `iss` (RFC 9207).
fn back_to_client(dev: &DevProvider, redirect_uri: &str, pairs: &[(&str, &str)], state: &Option<String>) -> Response {
    let mut all = pairs.to_vec();
    if let Some(state) = state {
        all.push(("state", state));
    }
    all.push(("iss", dev.issuer_str()));
    pages::see_other(redirect_uri, &all)
}
