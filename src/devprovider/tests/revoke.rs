//! Token revocation (RFC 7009): the client revokes what it was issued, and
//! a revoked access token no longer opens UserInfo.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;
use crate::devprovider::{Revocation, Revoked};

/// The tokens of a complete sign-in: (access token, refresh token).
async fn issued(app: &Router) -> (String, String) {
    let code = sign_in(app).await;
    let params = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
    ];
    let response = send(app, post_form("/token", form(&params))).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let tokens = response.json();
    let token = |name: &str| tokens[name].as_str().expect(name).to_owned();
    (token("access_token"), token("refresh_token"))
}

fn revoke_request(token: &str, hint: Option<&str>) -> Request<Body> {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = STANDARD.encode(format!("{}:{}", encode(CLIENT_ID), encode(SECRET)));
    let mut params = vec![("token", token)];
    params.extend(hint.map(|h| ("token_type_hint", h)));
    Request::post("/revoke")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Basic {credentials}"))
        .body(Body::from(form(&params)))
        .unwrap()
}

async fn userinfo_status(app: &Router, access_token: &str) -> StatusCode {
    let request = Request::get("/userinfo")
        .header(header::AUTHORIZATION, format!("Bearer {access_token}"))
        .body(Body::empty())
        .unwrap();
    send(app, request).await.status
}

#[tokio::test]
async fn revoked_tokens_are_gone_and_recorded() {
    let dev = provider();
    let app = dev.router();
    let doc = send(&app, get("/.well-known/openid-configuration")).await.json();
    assert_eq!(doc["revocation_endpoint"], format!("{ISSUER}/revoke"));
    let (access, refresh) = issued(&app).await;
    assert_ne!(access, refresh);
    assert_eq!(userinfo_status(&app, &access).await, StatusCode::OK);

    let r = send(&app, revoke_request(&refresh, Some("refresh_token"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A wrong hint is only where to look first.
    let r = send(&app, revoke_request(&access, Some("refresh_token"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(userinfo_status(&app, &access).await, StatusCode::UNAUTHORIZED);
    // Revoking again, or an unknown token: 200 all the same (RFC 7009 §2.2).
    let r = send(&app, revoke_request(&access, None)).await;
    assert_eq!(r.status, StatusCode::OK);
    let hint = |h: &str| Some(h.to_owned());
    assert_eq!(
        dev.revocations(),
        [
            Revocation {
                token_type_hint: hint("refresh_token"),
                revoked: Some(Revoked::RefreshToken),
            },
            Revocation {
                token_type_hint: hint("refresh_token"),
                revoked: Some(Revoked::AccessToken),
            },
            Revocation {
                token_type_hint: None,
                revoked: None,
            },
        ]
    );
}

#[tokio::test]
async fn revocation_needs_the_client_and_a_token() {
    let dev = provider();
    let app = dev.router();
    let (access, _) = issued(&app).await;
    let anonymous = post_form("/revoke", form(&[("token", access.as_str())]));
    assert_eq!(send(&app, anonymous).await.status, StatusCode::UNAUTHORIZED);
    let wrong = form(&[
        ("token", access.as_str()),
        ("client_id", CLIENT_ID),
        ("client_secret", "wrong"),
    ]);
    assert_eq!(
        send(&app, post_form("/revoke", wrong)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = send(&app, revoke_request("", None)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "an empty token is none");
    let no_token = form(&[("client_id", CLIENT_ID), ("client_secret", SECRET)]);
    assert_eq!(
        send(&app, post_form("/revoke", no_token)).await.status,
        StatusCode::BAD_REQUEST
    );
    // Nothing refused was revoked.
    assert_eq!(userinfo_status(&app, &access).await, StatusCode::OK);
    assert!(dev.revocations().is_empty());
}
