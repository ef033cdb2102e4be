//! oidc-gate as a library: an app adds its own routes and protects them with
//! the same sessions and login.

use axum::Router;
use axum::routing::get;
use oidc_gate::users::AuthSession;
use oidc_gate::web::{AppState, RequireLoginLayer};
use reqwest::StatusCode;

use crate::support::*;

fn my_routes() -> Router<AppState> {
    Router::new()
        .route("/reports/{id}", get(report))
        .route_layer(RequireLoginLayer)
        .route("/public", get(|| async { "anyone" }))
}

async fn report(auth: AuthSession, axum::extract::Path(id): axum::extract::Path<u32>) -> String {
    let user = auth.user.expect("RequireLoginLayer lets only users through");
    format!("report {id} for {}", user.display_name())
}

#[tokio::test]
async fn an_embedding_app_protects_its_own_routes() {
    let app = TestApp::spawn_with(Options {
        routes: Some(my_routes),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();

    assert_eq!(text(browser.get(&app.url("/public")).await).await, "anyone");
    let r = browser.get(&app.url("/reports/7")).await;
    let authorize = to_provider(&r);
    let api = browser
        .client
        .get(app.url("/reports/7"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);

    let done = finish_login(&browser, &authorize).await;
    assert_eq!(location(&done), "/reports/7");
    let r = browser.get(&app.url("/reports/7")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(text(r).await, "report 7 for Ada Lovelace");
}

fn nested_routes() -> Router<AppState> {
    let reports = Router::new()
        .route("/reports/{id}", get(report))
        .route_layer(RequireLoginLayer);
    Router::new()
        .nest("/app", reports)
        .route("/broken", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
}

#[tokio::test]
async fn a_nested_router_comes_back_to_the_full_path_and_its_own_errors_pass() {
    let app = TestApp::spawn_with(Options {
        routes: Some(nested_routes),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();

    // The login comes back to the path the browser asked for, mount point included.
    let r = browser.get(&app.url("/app/reports/7?tab=2")).await;
    let done = finish_login(&browser, &to_provider(&r)).await;
    assert_eq!(location(&done), "/app/reports/7?tab=2");
    let r = browser.get(&app.url("/app/reports/7")).await;
    assert_eq!(text(r).await, "report 7 for Ada Lovelace");

    // The app's own bare 500 is its answer, not the "storage unavailable" page.
    for who in [Browser::new(), browser] {
        let r = who.get(&app.url("/broken")).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(text(r).await.is_empty());
    }
}
