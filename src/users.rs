//! The signed-in user, and the `axum-login` backend that loads users from
//! the [`Store`] by id on each request, through a short-lived cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum_login::{AuthUser, AuthnBackend, UserId};

use crate::store::{Store, StoreError, UserRow};

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
        &[]
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
pub struct Backend {
    store: Store,
    /// Shared: the backend is cloned for every request.
    cache: Arc<Users>,
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
        Self {
            store,
            cache: Arc::new(Users(quick_cache::sync::Cache::new(USER_CACHE_SIZE))),
        }
    }
}

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = UserRow;
    type Error = StoreError;

    async fn authenticate(&self, row: UserRow) -> Result<Option<User>, StoreError> {
        let row = Arc::new(row);
        self.cache.insert(row.clone());
        Ok(Some(User { row }))
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, StoreError> {
        if let Some(row) = self.cache.get(*id) {
            return Ok(Some(User { row }));
        }
        let Some(row) = self.store.user(*id).await? else {
            return Ok(None);
        };
        let row = Arc::new(row);
        self.cache.insert(row.clone());
        Ok(Some(User { row }))
    }
}

/// The session type handlers extract.
pub type AuthSession = axum_login::AuthSession<Backend>;
