//! `oidc-gate sessions list [--user EMAIL|SUBJECT]` and `oidc-gate sessions
//! end --user EMAIL|SUBJECT`: people's sessions, listed or ended from the
//! command line with the servers' own environment, while they run. It never
//! listens.
//!
//! The store is opened beside the servers ([`Store::open_alongside`]): an
//! embedded SQLite database without the lock the running server holds.
//! Ending a session deletes its record and its link, as a logout does, so
//! the next request of it, on any instance, is anonymous; the SQLite
//! servers' session caches are told (a counter they read at most every
//! [`SESSION_CACHE_RECHECK`]), and the command returns only once that
//! interval has passed. With a configured provider that has a
//! `revocation_endpoint`, the tokens of each session ended are revoked there.

use std::fmt::Write as _;
use std::time::Duration;

use crate::clock::Clock;
use crate::config::{Args, Config, SessionsCommand};
use crate::provider::Provider;
use crate::session::Lifetimes;
use crate::store::{SESSION_CACHE_RECHECK, SessionEntry, Store, StoreError};
use crate::tokens::TokenVault;
use crate::web::revoke::{revoke_tokens, session_tokens};
use crate::web::sessions::{Live, browser, live_sessions, minute};

/// How long opening the store may take on top of `STORE_TIMEOUT` (as `check`).
const STORE_OPEN_SLACK: Duration = Duration::from_secs(10);

/// Why a `sessions` command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The environment is not a valid configuration.
    #[error("{0}")]
    Config(String),
    /// The store could not be opened or failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// No user has that email address or subject.
    #[error("no user has the email address or subject {0:?}")]
    NoSuchUser(String),
}

/// Runs `command` with the configuration of `args`; returns its report.
pub async fn run(args: Args, command: SessionsCommand) -> Result<String, AdminError> {
    let config = Config::from_args(args).map_err(|e| AdminError::Config(e.to_string()))?;
    let opened = tokio::time::timeout(
        config.store.timeout + STORE_OPEN_SLACK,
        Store::open_alongside(&config.store),
    )
    .await
    .map_err(|_| StoreError::Timeout(config.store.timeout + STORE_OPEN_SLACK))??;
    let lifetimes = Lifetimes::new(config.session);
    let result = match command {
        SessionsCommand::List { user } => list(&opened, &lifetimes, user.as_deref()).await,
        SessionsCommand::End { user } => {
            let revoker = revoker(&config, &opened);
            end(&opened, &user, revoker.as_ref()).await
        }
    };
    opened.release_lock();
    result
}

/// What revokes the tokens of the sessions ended: the configured provider
/// (its discovery fetched when first needed, every request bounded by
/// `OIDC_HTTP_TIMEOUT`) and the servers' token key. None with the
/// development provider, which lives inside the server.
struct Revoker {
    /// Every configured provider: a session's tokens go to its issuer's.
    providers: Vec<Provider>,
    vault: TokenVault,
}

fn revoker(config: &Config, store: &Store) -> Option<Revoker> {
    let providers: Vec<Provider> = config
        .clients()
        .iter()
        .map(|named| crate::app::provider(config, named, Clock::system()))
        .collect();
    if providers.is_empty() {
        return None;
    }
    Some(Revoker {
        providers,
        vault: TokenVault::configured(config.token_key.as_ref(), store.login_cookie_key()),
    })
}

/// The sessions of the people `who` names (every user when `None`).
async fn entries(store: &Store, who: Option<&str>) -> Result<Vec<SessionEntry>, AdminError> {
    let Some(who) = who else {
        return Ok(store.all_sessions().await?);
    };
    let users = store.users_named(who).await?;
    if users.is_empty() {
        return Err(AdminError::NoSuchUser(who.to_owned()));
    }
    let mut entries = Vec::new();
    for user in users {
        entries.extend(store.sessions_of(&user.issuer, &user.subject).await?);
    }
    Ok(entries)
}

async fn list(store: &Store, lifetimes: &Lifetimes, who: Option<&str>) -> Result<String, AdminError> {
    let entries = entries(store, who).await?;
    let now = Clock::system().unix();
    let live = live_sessions(store, lifetimes, now, entries).await?;
    let mut out = String::new();
    for Live { entry, activity } in &live {
        let started = entry.started_at.or(activity.map(|a| a.login_at));
        let last_seen = activity.map(|a| a.last_seen).or(started);
        let _ = writeln!(
            out,
            "{}  {}  subject {}  signed in {}  last seen {}  {}  from {}",
            entry.email.as_deref().unwrap_or("-"),
            entry.issuer,
            entry.subject,
            started.map_or_else(|| "unknown".to_owned(), minute),
            last_seen.map_or_else(|| "unknown".to_owned(), minute),
            browser(entry.user_agent.as_deref()),
            entry.client_ip.as_deref().unwrap_or("unknown"),
        );
    }
    let _ = writeln!(out, "{} session{}", live.len(), if live.len() == 1 { "" } else { "s" });
    Ok(out)
}

async fn end(store: &Store, who: &str, revoker: Option<&Revoker>) -> Result<String, AdminError> {
    let entries = entries(store, Some(who)).await?;
    let mut revoked = 0;
    for entry in &entries {
        revoked += end_session(store, entry, revoker).await?;
    }
    if !entries.is_empty() {
        store.note_sessions_ended_elsewhere().await?;
        // Every server's session cache has looked again once this has passed.
        tokio::time::sleep(SESSION_CACHE_RECHECK * 2).await;
    }
    let n = entries.len();
    let mut out = format!("ended {n} session{} of {who}\n", if n == 1 { "" } else { "s" });
    if revoker.is_some() && revoked > 0 {
        let _ = writeln!(
            out,
            "revoked {revoked} token{} at the provider",
            if revoked == 1 { "" } else { "s" }
        );
    }
    Ok(out)
}

/// Ends one session: the one place where this command ends a session
/// (anything else a logout does to a session belongs here too): its
/// tokens, read first, are revoked at the provider once it has ended, as
/// the Log out button's are; returns how many were.
async fn end_session(store: &Store, entry: &SessionEntry, revoker: Option<&Revoker>) -> Result<usize, StoreError> {
    let tokens = match revoker {
        Some(_) => session_tokens(store, &entry.session_id).await?,
        None => None,
    };
    store.end_session(&entry.session_id).await?;
    tracing::info!(
        target: "audit",
        event = "session_end",
        reason = "ended_by_admin",
        subject = entry.subject,
        issuer = entry.issuer,
        "session ended"
    );
    let provider = revoker.and_then(|r| r.providers.iter().find(|p| p.issuer() == entry.issuer));
    Ok(match (revoker, provider, tokens) {
        (Some(r), Some(provider), Some(tokens)) => revoke_tokens(provider, &r.vault, tokens).await,
        _ => 0,
    })
}
