//! Reading claims beyond the standard ones (groups, Google's `hd`) out of a
//! token's JSON object, by name or by a dotted path into nested objects.

use serde_json::{Map, Value};

/// Where a claim is in a claims object: a name (`groups`), or a dotted path
/// into nested objects (`realm_access.roles`, as Keycloak sends roles). A
/// claim whose own name contains dots (Auth0's namespaced
/// `https://example.com/roles`) is found by that name first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(String);

impl ClaimPath {
    /// A path; `None` if it is empty or has an empty segment (`a..b`, `.a`).
    pub fn new(path: &str) -> Option<Self> {
        let path = path.trim();
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return None;
        }
        Some(Self(path.to_owned()))
    }

    /// The path as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The claim's value; `None` when absent or `null`.
    pub fn find<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let found = match claims.get(&self.0) {
            Some(v) => Some(v),
            None => {
                let mut segments = self.0.split('.');
                let first = claims.get(segments.next()?);
                segments.try_fold(first?, |v, s| v.as_object()?.get(s))
            }
        };
        found.filter(|v| !v.is_null())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_reach_into_objects_and_dotted_names_are_found_whole() {
        let claims = json!({
            "groups": ["a"],
            "realm_access": {"roles": ["admin"]},
            "https://example.com/roles": ["r"],
            "gone": null,
            "flat": "x",
        });
        let claims = claims.as_object().unwrap();
        let find = |p: &str| ClaimPath::new(p).unwrap().find(claims).cloned();
        assert_eq!(find("groups"), Some(json!(["a"])));
        assert_eq!(find("realm_access.roles"), Some(json!(["admin"])));
        assert_eq!(find("https://example.com/roles"), Some(json!(["r"])));
        assert_eq!(find("realm_access.missing"), None);
        assert_eq!(find("flat.deeper"), None);
        assert_eq!(find("gone"), None);
        assert_eq!(find("absent"), None);
        for bad in ["", " ", "a..b", ".a", "a."] {
            assert!(ClaimPath::new(bad).is_none(), "{bad:?}");
        }
    }
}
