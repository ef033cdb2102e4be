//! The providers users may sign in with: one (the `OIDC_*` variables, or
//! the development provider), or several (`CONFIG_FILE`'s `[[providers]]`),
//! each with an id, a display name and optional access rules of its own.
//!
//! A login is bound to its provider when it starts; everything after it
//! (refresh, revocation, logout) finds that provider again by the issuer
//! kept in the session.

use std::sync::Arc;

use super::Provider;
use crate::access::Rules;

/// One provider of the list.
pub struct Listed {
    /// `?provider=` and the redirect URI's last segment (several providers).
    pub id: String,
    /// The chooser's button text.
    pub name: String,
    /// The provider.
    pub provider: Provider,
    /// Rules of its sign-ins, on top of the global ones.
    pub rules: Option<Rules>,
}

/// The providers, in the configured order. Cheap to clone.
#[derive(Clone)]
pub struct Providers(Arc<[Listed]>);

impl Providers {
    /// The list; it must not be empty.
    pub fn new(list: Vec<Listed>) -> Self {
        assert!(!list.is_empty(), "at least one provider");
        Self(list.into())
    }

    /// The first provider: the only one, in most configurations.
    pub fn first(&self) -> &Listed {
        &self.0[0]
    }

    /// Whether users choose among several.
    pub fn several(&self) -> bool {
        self.0.len() > 1
    }

    /// Every provider, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Listed> {
        self.0.iter()
    }

    /// Whether some provider has rules of its own.
    pub fn have_rules(&self) -> bool {
        self.0.iter().any(|p| p.rules.is_some())
    }

    /// The provider with this id.
    pub fn by_id(&self, id: &str) -> Option<&Listed> {
        self.0.iter().find(|p| p.id == id)
    }

    /// The provider with this issuer (as kept in sessions and sent as `iss`).
    pub fn by_issuer(&self, issuer: &str) -> Option<&Listed> {
        self.0.iter().find(|p| p.provider.issuer() == issuer)
    }
}
