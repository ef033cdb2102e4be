//! The authorization endpoint and logout: the sign-in page, what is and is
//! not redirected, and the authorization response.

use axum::http::{StatusCode, header};

use super::*;

fn authorize_url(params: &[(&str, &str)]) -> String {
    format!("/authorize?{}", form(params))
}

#[tokio::test]
async fn sign_in_page_warns_and_carries_the_request() {
    let app = provider().router();
    let response = send(&app, get(&authorize_url(&auth_params()))).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(response.header(header::CONTENT_TYPE).unwrap().starts_with("text/html"));
    assert_eq!(response.header(header::X_FRAME_OPTIONS), Some("DENY"));
    let body = &response.body;
    assert!(body.contains(WARNING));
    assert!(body.contains("width=device-width"));
    assert!(body.contains(r#"value="Ada Lovelace""#));
    assert!(body.contains(r#"value="ada@example.com""#));
    assert!(body.contains(&format!(r#"action="{ISSUER}/authorize""#)));
    assert!(body.contains(">Sign in</button>") && body.contains(">Cancel</button>"));
    assert!(body.contains(CHALLENGE));
    assert!(body.contains("n-0S6_WzA2Mj"));
    assert!(
        !body.contains("<link") && !body.contains("<script"),
        "no external assets"
    );
}

#[tokio::test]
async fn sign_in_page_escapes_request_values() {
    let app = provider().router();
    let params = with(auth_params(), "state", Some(r#""><script>alert(1)</script>"#));
    let response = send(&app, get(&authorize_url(&params))).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(!response.body.contains("<script>alert(1)"));
    assert!(
        !response.body.contains(r#"value="">"#),
        "quote must not close the attribute"
    );
    assert!(response.body.contains("&#60;script&#62;alert(1)"));
}

#[tokio::test]
async fn unregistered_redirect_uri_is_not_redirected() {
    let app = provider().router();
    for bad in ["https://evil.example/cb", "http://localhost:5000/auth/callback/", ""] {
        let params = with(auth_params(), "redirect_uri", Some(bad));
        let response = send(&app, get(&authorize_url(&params))).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(response.header(header::LOCATION).is_none());
        assert!(response.body.contains("redirect_uri"));

        let mut params = params.clone();
        params.push(("action", "sign_in"));
        let response = send(&app, post_form("/authorize", form(&params))).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(response.header(header::LOCATION).is_none());
    }
}

#[tokio::test]
async fn unknown_client_is_not_redirected() {
    let app = provider().router();
    for client in [Some("someone-else"), None] {
        let params = with(auth_params(), "client_id", client);
        let response = send(&app, get(&authorize_url(&params))).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST);
        assert!(response.header(header::LOCATION).is_none());
        assert!(response.body.contains("client_id"));
    }
}

#[tokio::test]
async fn bad_requests_from_a_known_client_are_redirected_with_an_error() {
    let app = provider().router();
    let cases = [
        (with(auth_params(), "code_challenge", None), "invalid_request"),
        (with(auth_params(), "code_challenge_method", None), "invalid_request"),
        (
            with(auth_params(), "code_challenge_method", Some("plain")),
            "invalid_request",
        ),
        (with(auth_params(), "code_challenge", Some("short")), "invalid_request"),
        (
            with(auth_params(), "response_type", Some("token")),
            "unsupported_response_type",
        ),
        (with(auth_params(), "response_type", None), "invalid_request"),
        (with(auth_params(), "scope", Some("email profile")), "invalid_scope"),
        (with(auth_params(), "prompt", Some("none")), "login_required"),
        (with(auth_params(), "request", Some("eyJ...")), "request_not_supported"),
    ];
    for (params, error) in cases {
        let response = send(&app, get(&authorize_url(&params))).await;
        let (url, query) = response.redirect_query();
        assert!(url.as_str().starts_with(REDIRECT));
        assert_eq!(query["error"], error, "{params:?}");
        assert_eq!(query["state"], "st&te=1");
        assert_eq!(query["iss"], ISSUER);
        assert!(!query.contains_key("code"));
    }
}

#[tokio::test]
async fn duplicate_parameters_are_refused_without_redirect() {
    let app = provider().router();
    let mut params = auth_params();
    params.push(("redirect_uri", "https://evil.example/cb"));
    let response = send(&app, get(&authorize_url(&params))).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(response.header(header::LOCATION).is_none());
}

#[tokio::test]
async fn cancel_redirects_with_access_denied() {
    let app = provider().router();
    let mut params = auth_params();
    params.push(("action", "cancel"));
    let response = send(&app, post_form("/authorize", form(&params))).await;
    let (_, query) = response.redirect_query();
    assert_eq!(query["error"], "access_denied");
    assert_eq!(query["state"], "st&te=1");
    assert_eq!(query["iss"], ISSUER);
    assert!(!query.contains_key("code"));
}

#[tokio::test]
async fn sign_in_redirects_with_code_state_and_iss() {
    let app = provider().router();
    let mut params = auth_params();
    params.extend([("name", "Ada"), ("email", "ada@example.com"), ("action", "sign_in")]);
    let response = send(&app, post_form("/authorize", form(&params))).await;
    assert_eq!(response.header(header::CACHE_CONTROL), Some("no-store"));
    let (url, query) = response.redirect_query();
    assert_eq!(url.path(), "/auth/callback");
    assert_eq!(query["state"], "st&te=1");
    assert_eq!(query["iss"], ISSUER);
    // At least 128 bits of base64url.
    assert!(query["code"].len() >= 22);
    assert!(!query.contains_key("error"));
}

#[tokio::test]
async fn invalid_email_shows_the_form_again() {
    let app = provider().router();
    let mut params = auth_params();
    params.extend([("name", "Ada"), ("email", "not an email"), ("action", "sign_in")]);
    let response = send(&app, post_form("/authorize", form(&params))).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(response.header(header::LOCATION).is_none());
    assert!(response.body.contains("Please enter an email address"));
    assert!(response.body.contains(r#"value="not an email""#));
}

#[tokio::test]
async fn form_without_action_is_refused() {
    let app = provider().router();
    let response = send(&app, post_form("/authorize", form(&auth_params()))).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(response.header(header::LOCATION).is_none());
}

#[tokio::test]
async fn end_session_returns_to_registered_uri_with_state() {
    let app = provider().router();
    let query = form(&[
        ("id_token_hint", "whatever"),
        ("post_logout_redirect_uri", POST_LOGOUT),
        ("state", "bye"),
    ]);
    let response = send(&app, get(&format!("/end_session?{query}"))).await;
    let (url, query) = response.redirect_query();
    assert!(url.as_str().starts_with(POST_LOGOUT));
    assert_eq!(query["state"], "bye");

    let query = form(&[("post_logout_redirect_uri", POST_LOGOUT)]);
    let response = send(&app, get(&format!("/end_session?{query}"))).await;
    assert_eq!(response.header(header::LOCATION), Some(POST_LOGOUT));
}

#[tokio::test]
async fn end_session_refuses_unregistered_uri() {
    let app = provider().router();
    let query = form(&[("post_logout_redirect_uri", "https://evil.example/")]);
    let response = send(&app, get(&format!("/end_session?{query}"))).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(response.header(header::LOCATION).is_none());
    assert!(response.body.contains("post_logout_redirect_uri"));
}

#[tokio::test]
async fn end_session_without_uri_shows_signed_out_page() {
    let app = provider().router();
    let response = send(&app, get("/end_session")).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(response.body.contains("You are signed out of the development provider"));
    assert!(response.body.contains(WARNING));
}
