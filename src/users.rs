//! The signed-in user, and the `axum-login` backend that loads users from
//! the [`Store`] by id on each request, through a short-lived cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum_login::{AuthUser, AuthnBackend, UserId};

use crate::store::{Store, StoreError, UserRow};
use crate::web::AppState;

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct User {
    /// The stored user (shared with the cache: loaded on every request).
    pub row: Arc<UserRow>,
}

impl User {
    /// A name to greet the user with: name, else email, else subject.
    pub fn display_name(&self) -> &str {
        self.row
            .name
            .as_deref()
            .or(self.row.email.as_deref())
            .unwrap_or(&self.row.subject)
    }
}

impl User {
    /// See [`AuthUser::session_auth_hash`].
    const AUTH_HASH: &[u8] = &[];
}

impl AuthUser for User {
    type Id = i64;

    fn id(&self) -> i64 {
        self.row.id
    }

    /// Empty: the provider holds the credentials, so there is no local
    /// credential change to end sessions on; sessions end by logout,
    /// back-channel logout and their lifetimes. (A longer value would be
    /// stored in every session as a JSON array of numbers.)
    fn session_auth_hash(&self) -> &[u8] {
        Self::AUTH_HASH
    }
}

/// How long a loaded user is reused. Profiles change only at sign-in and
/// sessions are checked in the session store on every request, so a cached
/// profile can at worst show a name that is this much out of date.
const USER_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most users cached: those active in the last minute.
const USER_CACHE_SIZE: usize = 2_000;

/// The `axum-login` backend. Credentials are a user already created from a
/// validated ID token: the provider did the authenticating.
#[derive(Clone, Debug)]
pub struct Backend(Arc<BackendInner>);

/// What a [`Backend`] shares: it is cloned twice for every request, and a
/// store handle is many reference counts.
struct BackendInner {
    store: Store,
    cache: Users,
    /// The app whose router this backend serves: where
    /// [`crate::web::RequireLoginLayer`] starts an anonymous browser's
    /// sign-in. Reached through the [`AuthSession`] every request already
    /// has, it costs a signed-in request nothing.
    app: Option<AppState>,
}

impl std::fmt::Debug for BackendInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendInner")
            .field("store", &self.store)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// Users by id, each with when it was loaded.
struct Users(quick_cache::sync::Cache<i64, (Arc<UserRow>, Instant)>);

impl Users {
    fn get(&self, id: i64) -> Option<Arc<UserRow>> {
        let (row, loaded) = self.0.get(&id)?;
        (loaded.elapsed() < USER_CACHE_TTL).then_some(row)
    }

    fn insert(&self, row: Arc<UserRow>) {
        self.0.insert(row.id, (row, Instant::now()));
    }
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Users({} cached)", self.0.len())
    }
}

impl Backend {
    /// A backend over `store`.
    pub fn new(store: Store) -> Self {
        Self::with_app(store, None)
    }

    /// The backend of `app`'s router (see [`Backend::app`]).
    pub(crate) fn of_app(app: &AppState) -> Self {
        Self::with_app(app.store.clone(), Some(app.clone()))
    }

    fn with_app(store: Store, app: Option<AppState>) -> Self {
        Self(Arc::new(BackendInner {
            store,
            cache: Users(quick_cache::sync::Cache::new(USER_CACHE_SIZE)),
            app,
        }))
    }

    /// The app this backend signs users in to; `None` for a backend built
    /// with [`Backend::new`] (outside [`crate::web::router`]).
    pub(crate) fn app(&self) -> Option<&AppState> {
        self.0.app.as_ref()
    }
}

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = UserRow;
    type Error = StoreError;

    async fn authenticate(&self, row: UserRow) -> Result<Option<User>, StoreError> {
        let row = Arc::new(row);
        self.0.cache.insert(row.clone());
        Ok(Some(User { row }))
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, StoreError> {
        if let Some(row) = self.0.cache.get(*id) {
            return Ok(Some(User { row }));
        }
        let Some(row) = self.0.store.user(*id).await? else {
            return Ok(None);
        };
        let row = Arc::new(row);
        self.0.cache.insert(row.clone());
        Ok(Some(User { row }))
    }
}

/// The session entry that signs in the user `id`: `axum-login`'s data
/// under its key, as `AuthSession::login` would write it, but as an array
/// of its fields (`[user_id, auth_hash]`) rather than an object: the
/// session is copied and this entry read on every signed-in request, and
/// an array is one allocation where an object is a tree node and a string
/// for each field name. `axum-login` reads both shapes (its derived
/// `Deserialize`), so sessions it signed in itself still load; the tests
/// below hold the two together. Every login writes this entry (where the
/// user and the session are written in one transaction, the user's id is
/// known only then).
pub fn signed_in_entry(id: i64) -> (String, serde_json::Value) {
    let data = serde_json::json!([id, User::AUTH_HASH]);
    (crate::session::AUTH_KEY.to_owned(), data)
}

/// The session type handlers extract.
pub type AuthSession = axum_login::AuthSession<Backend>;

#[cfg(test)]
mod tests {

    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt as _;
    use tower_sessions::SessionManagerLayer;

    use super::*;
    use crate::config::sqlite_for_tests;
    use crate::session::AUTH_KEY;
    use crate::store::UserProfile;

    /// Every login writes the signed-in entry itself (in the array
    /// `[user_id, auth_hash]`): it must hold what `axum-login` writes, field
    /// for field, and `axum-login` must read it, and the object it writes
    /// itself (sessions signed in before), as that user signed in.
    #[tokio::test]
    async fn the_signed_in_entry_is_what_axum_login_writes_and_reads() {
        use tower_sessions::Session;

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&sqlite_for_tests(dir.path())).await.unwrap();
        let profile = UserProfile {
            issuer: "https://op.example",
            subject: "ada",
            email: None,
            email_verified: None,
            name: None,
            picture: None,
        };
        let row = store.upsert_user(&profile, 1).await.unwrap();
        let id = row.id;
        let user = User { row: Arc::new(row) };
        let expected = signed_in_entry(id);
        let backend = Backend::new(store.clone());
        let app = Router::new()
            .route(
                "/theirs",
                get(async move |mut auth: AuthSession| {
                    auth.login(&user).await.unwrap();
                    axum::Json(auth.session.get_value(AUTH_KEY).await.unwrap())
                }),
            )
            .route(
                "/ours",
                get(async move |session: Session| {
                    let (key, value) = signed_in_entry(id);
                    session.insert_value(&key, value).await.unwrap();
                }),
            )
            .route(
                "/who",
                get(async |auth: AuthSession| axum::Json(auth.user.map(|u| u.row.id))),
            )
            .layer(tower::layer::layer_fn(move |inner| {
                axum_login::AuthManager::new(inner, backend.clone(), AUTH_KEY)
            }))
            .layer(SessionManagerLayer::new(store.session_backend()));
        let get = async |path: &str, cookie: Option<&str>| {
            let mut request = Request::get(path);
            if let Some(cookie) = cookie {
                request = request.header(axum::http::header::COOKIE, cookie);
            }
            let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
            let cookie = response
                .headers()
                .get(axum::http::header::SET_COOKIE)
                .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned());
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            (cookie, body)
        };

        let (theirs_cookie, body) = get("/theirs", None).await;
        let theirs: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(expected.0, AUTH_KEY);
        assert_eq!(
            expected.1,
            serde_json::json!([theirs["user_id"], theirs["auth_hash"]]),
            "{theirs}"
        );
        let (ours_cookie, _) = get("/ours", None).await;
        for cookie in [theirs_cookie, ours_cookie] {
            let (_, who) = get("/who", cookie.as_deref()).await;
            assert_eq!(
                serde_json::from_slice::<Option<i64>>(&who).unwrap(),
                Some(id),
                "{cookie:?}"
            );
        }
        let (_, nobody) = get("/who", None).await;
        assert_eq!(serde_json::from_slice::<Option<i64>>(&nobody).unwrap(), None);
    }
}
