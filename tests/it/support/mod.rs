//! Test harness: the real app on 127.0.0.1:0, and a cookie-keeping client
//! that does not follow redirects, so every hop is visible to the test.

#![allow(dead_code)]

pub mod html;
pub mod process;
pub mod proxy;
pub mod redis;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oidc_gate::app::App;
use oidc_gate::clock::Clock;
use oidc_gate::config::{Args, Config};
use oidc_gate::store::Store;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::{Response, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How to start a test app.
#[derive(Default, Clone)]
pub struct Options {
    /// Reuse a data directory (for restart tests); a fresh one otherwise.
    pub data_dir: Option<PathBuf>,
    /// A configured provider: issuer, client id, client secret. Default: the development provider.
    pub provider: Option<(String, String, String)>,
    /// Extra settings, applied to the arguments before validation.
    pub tweak: Option<fn(&mut Args)>,
    /// A clock shared with the test (to move time forward).
    pub clock: Option<Clock>,
    /// `DATABASE_URL`, `SESSION_STORE_URL`, `DATABASE_SCHEMA`, `STORE_TIMEOUT` (all optional).
    pub store: StoreEnv,
    /// Routes of an embedding app, merged with [`App::merge`].
    pub routes: Option<fn() -> axum::Router<oidc_gate::web::AppState>>,
    /// Prometheus metrics on a listener of their own (`METRICS_LISTEN`, port 0).
    pub metrics: bool,
    /// `CONFIG_FILE` (e.g. a list of `[[providers]]`).
    pub config_file: Option<PathBuf>,
}

/// Store settings as the environment would give them.
#[derive(Default, Clone)]
pub struct StoreEnv {
    pub database_url: Option<String>,
    pub session_store_url: Option<String>,
    pub database_schema: Option<String>,
    pub store_timeout: Option<String>,
}

/// A running oidc-gate.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its store (to assert what is and is not stored).
    pub store: Store,
    /// Its clock.
    pub clock: Clock,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Where its metrics are served, when [`Options::metrics`] asked for them.
    pub metrics_addr: Option<SocketAddr>,
    /// The embedded development provider, when no provider was configured.
    pub dev: Option<oidc_gate::devprovider::DevProvider>,
    /// Its shared state (to call library functions as a route would).
    pub state: oidc_gate::web::AppState,
    _tmp: Option<Arc<tempfile::TempDir>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), oidc_gate::app::StartupError>>>,
}

impl TestApp {
    /// Starts the app with the development provider and a fresh data directory.
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    /// Starts the app with `options`.
    pub async fn spawn_with(options: Options) -> Self {
        let (tmp, data_dir) = match options.data_dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::tempdir().expect("temp dir");
                let p = t.path().to_path_buf();
                (Some(Arc::new(t)), p)
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let mut args = Args {
            public_url: format!("http://{addr}"),
            listen: addr.to_string(),
            data_dir: data_dir.clone(),
            oidc_scopes: "openid email profile".into(),
            oidc_clock_skew: "60s".into(),
            oidc_http_timeout: "2s".into(),
            session_idle_timeout: "12h".into(),
            session_max_age: "7d".into(),
            database_max_connections: "10".into(),
            store_timeout: "3s".into(),
            session_cache_size: "2000".into(),
            // Tests stop their app at once (the drain tests set their own).
            shutdown_grace: "0s".into(),
            shutdown_timeout: "10s".into(),
            ..Args::default()
        };
        if let Some((issuer, id, secret)) = options.provider {
            args.oidc_issuer = Some(issuer);
            args.oidc_client_id = Some(id);
            args.oidc_client_secret = Some(secret);
        }
        args.database_url = options.store.database_url;
        args.session_store_url = options.store.session_store_url;
        args.database_schema = options.store.database_schema;
        if let Some(t) = options.store.store_timeout {
            args.store_timeout = t;
        }
        let metrics = match options.metrics {
            true => Some(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind metrics"),
            ),
            false => None,
        };
        let metrics_addr = metrics.as_ref().map(|l| l.local_addr().unwrap());
        args.metrics_listen = metrics_addr.map(|a| a.to_string());
        args.gateway.config_file = options.config_file;
        if let Some(tweak) = options.tweak {
            tweak(&mut args);
        }
        let config = Config::from_args(args).expect("valid test config");
        let clock = options.clock.unwrap_or_default();
        let mut app = App::build(&config, clock.clone()).await.expect("app builds");
        if let Some(routes) = options.routes {
            app = app.merge(routes());
        }
        if let Some(listener) = metrics {
            app = app.with_metrics_listener(listener);
        }
        let store = app.state().store.clone();
        let dev = app.dev_provider().cloned();
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.serve(listener, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            store,
            clock,
            data_dir,
            metrics_addr,
            dev,
            state,
            _tmp: tmp,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// An absolute URL on this app.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the server and waits for it (keeps the data directory while `self` lives).
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
    }

    /// Keeps the temporary data directory alive for a restart.
    pub fn keep_data(&self) -> Option<Arc<tempfile::TempDir>> {
        self._tmp.clone()
    }

    /// Number of rows in a table of the embedded database.
    pub async fn count(&self, table: &str) -> i64 {
        count_rows(&self.data_dir, table).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Counts rows in `table` of the SQLite database in `data_dir`, read-only.
pub async fn count_rows(data_dir: &Path, table: &str) -> i64 {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", data_dir.join("oidc-gate.sqlite3").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open db");
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    n
}

/// A browser: keeps cookies, never follows redirects.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser with an empty cookie jar.
    pub fn new() -> Self {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .unwrap();
        Self { client, jar }
    }

    /// GET.
    pub async fn get(&self, url: &str) -> Response {
        self.client.get(url).send().await.expect("GET")
    }

    /// POST a form.
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Response {
        self.client.post(url).form(form).send().await.expect("POST")
    }

    /// The `Cookie` header this browser would send to `url`.
    pub fn cookies(&self, url: &str) -> String {
        self.jar
            .cookies(&url.parse().unwrap())
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// The session cookie's value for `app`, if any.
    pub fn session_id(&self, app: &TestApp) -> Option<String> {
        self.cookies(&app.url("/"))
            .split("; ")
            .find_map(|c| c.strip_prefix("oidc_gate=").map(str::to_owned))
    }

    /// Puts a cookie into the jar, as another browser holding it would send it.
    pub fn set_cookie(&self, app: &TestApp, cookie: &str) {
        self.jar.add_cookie_str(cookie, &app.url("/").parse().unwrap());
    }
}

/// Every `Set-Cookie` header of a response.
pub fn set_cookies(r: &Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `Location` header of a redirect.
pub fn location(r: &Response) -> String {
    r.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on {} {}", r.status(), r.url()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Asserts a redirect and returns its absolute target.
pub fn redirect_target(r: &Response) -> String {
    assert!(
        r.status().is_redirection(),
        "expected a redirect from {}, got {}",
        r.url(),
        r.status()
    );
    let loc = location(r);
    r.url().join(&loc).unwrap().to_string()
}

/// Asserts that `r` sends the browser straight to the provider to sign
/// in: a `303` to an authorization request (code flow, `state`, `nonce`,
/// PKCE S256, our client and redirect URI) that set its login-in-progress
/// cookie. Returns the authorization URL.
pub fn to_provider(r: &Response) -> String {
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "a redirect from {}", r.url());
    let authorize = redirect_target(r);
    let url = url::Url::parse(&authorize).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q.get("response_type").map(String::as_str), Some("code"), "{authorize}");
    assert_eq!(
        q.get("code_challenge_method").map(String::as_str),
        Some("S256"),
        "{authorize}"
    );
    for key in ["state", "nonce", "code_challenge"] {
        // 32 random bytes, base64url.
        assert!(q.get(key).is_some_and(|v| v.len() >= 43), "{key} in {authorize}");
    }
    for key in ["client_id", "redirect_uri"] {
        assert!(q.get(key).is_some_and(|v| !v.is_empty()), "{key} in {authorize}");
    }
    let cookies = set_cookies(r);
    assert!(
        cookies.iter().any(|c| c.contains("_login_")),
        "a login-in-progress cookie: {cookies:?}"
    );
    authorize
}

/// Whether `r` sends the browser to sign in at the provider (a `303` to
/// an authorization request with `state`).
pub fn is_to_provider(r: &Response) -> bool {
    r.status() == StatusCode::SEE_OTHER
        && r.headers()
            .get("location")
            .and_then(|l| url::Url::parse(l.to_str().ok()?).ok())
            .is_some_and(|u| {
                u.query_pairs().any(|(k, _)| k == "state") && u.query_pairs().any(|(k, _)| k == "code_challenge")
            })
}

/// Signs in as Ada at the development provider's page `authorize` (where a
/// protected page or `/login` sent `browser`); returns the callback's answer.
pub async fn finish_login(browser: &Browser, authorize: &str) -> Response {
    let callback = dev_provider_sign_in(browser, authorize, "Ada Lovelace", "ada@example.com", "sign_in").await;
    browser.get(&callback).await
}

/// Starts a login at `/login?next=…` and returns the provider's authorization URL.
pub async fn start_login(app: &TestApp, browser: &Browser, next: Option<&str>) -> String {
    let path = match next {
        Some(n) => format!("/login?next={}", urlencoding(n)),
        None => "/login".to_owned(),
    };
    let r = browser.get(&app.url(&path)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "GET {path}");
    redirect_target(&r)
}

/// Signs in on the development provider's page and returns the callback URL it sends back.
pub async fn dev_provider_sign_in(
    browser: &Browser,
    authorize_url: &str,
    name: &str,
    email: &str,
    action: &str,
) -> String {
    let page = browser.get(authorize_url).await;
    assert_eq!(page.status(), StatusCode::OK, "dev provider page");
    let action_url = page.url().clone();
    let body = page.text().await.unwrap();
    assert!(
        body.contains("evelopment provider"),
        "the page says development provider"
    );
    let form = html::form(&body).expect("a form on the sign-in page");
    let mut fields: Vec<(String, String)> = form.inputs;
    for (k, v) in fields.iter_mut() {
        match k.as_str() {
            "name" => *v = name.to_owned(),
            "email" => *v = email.to_owned(),
            _ => {}
        }
    }
    fields.push(("action".into(), action.into()));
    let target = action_url.join(&form.action).unwrap();
    let r = browser.client.post(target).form(&fields).send().await.unwrap();
    redirect_target(&r)
}

/// A full login through the development provider; returns the callback's response.
pub async fn login(app: &TestApp, browser: &Browser, next: Option<&str>) -> Response {
    let authorize = start_login(app, browser, next).await;
    let callback = dev_provider_sign_in(browser, &authorize, "Ada Lovelace", "ada@example.com", "sign_in").await;
    browser.get(&callback).await
}

/// Percent-encodes a query value.
pub fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The body of a response as text.
pub async fn text(r: Response) -> String {
    r.text().await.unwrap()
}

/// The sentence of the secret page.
pub const SECRET: &str = "Only logged in user can see this.";

impl TestApp {
    /// Waits up to `limit` for the server to stop by itself (e.g. start-up
    /// refused the provider) and returns how it ended; `None` while it still runs.
    pub async fn exited(&mut self, limit: std::time::Duration) -> Option<Result<(), oidc_gate::app::StartupError>> {
        let task = self.task.as_mut()?;
        let outcome = tokio::time::timeout(limit, task).await.ok()?;
        self.task = None;
        Some(outcome.expect("the server task does not panic"))
    }
}

/// The CSRF token of the Log out form on the index page at `base` (an app's root URL, no trailing slash).
pub async fn logout_csrf(browser: &Browser, base: &str) -> String {
    let page = text(browser.get(&format!("{base}/")).await).await;
    let form = html::form(&page).expect("the logout form");
    assert_eq!(form.action, "/logout");
    form.inputs
        .into_iter()
        .find(|(k, _)| k == "csrf")
        .expect("a csrf field")
        .1
}

/// Presses the Log out button of the index page at `base`; returns the app's answer.
pub async fn click_log_out(browser: &Browser, base: &str) -> Response {
    let csrf = logout_csrf(browser, base).await;
    browser.post_form(&format!("{base}/logout"), &[("csrf", &csrf)]).await
}

/// The value of query parameter `name` in `url` (panics if absent).
pub fn query_param(url: &str, name: &str) -> String {
    let url = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    let found = url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    found.unwrap_or_else(|| panic!("no {name} in {url}"))
}

/// Routes of an embedding app with `GET /api/token`: the signed-in user's
/// access token as a handler gets it ([`oidc_gate::web::UserTokens`]).
pub fn access_token_routes() -> axum::Router<oidc_gate::web::AppState> {
    async fn token(auth: oidc_gate::web::UserTokens) -> Result<String, oidc_gate::web::TokenFailure> {
        let token = auth.access_token().await?;
        Ok(token.map(|t| t.expose().to_owned()).unwrap_or_default())
    }
    axum::Router::new()
        .route("/api/token", axum::routing::get(token))
        .route_layer(oidc_gate::web::RequireLoginLayer)
}

/// `GET /api/token` of [`access_token_routes`] as an API client: status and body.
pub async fn api_token(browser: &Browser, app: &TestApp) -> (StatusCode, String) {
    let r = browser
        .client
        .get(app.url("/api/token"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}
