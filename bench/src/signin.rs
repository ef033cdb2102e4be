//! Signing in at a gateway the way a browser does, whoever the relying
//! party is (oidc-gate's `/oauth2/…` routes, Apache's mod_auth_openidc):
//! follow each redirect by hand with one cookie jar, fill in the
//! development provider's form when it shows, and stop at the first answer
//! after it that is not a redirect. What the gateway then serves with the
//! cookies is what wrk loads.

use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, COOKIE, LOCATION};
use url::Url;

use crate::client::{Jar, SignsIn, form};

/// Redirects a sign-in may take (oidc-gate and mod_auth_openidc take 3:
/// the protected page to the provider, its form to the callback, the
/// callback to the page; earlier oidc-gate versions took 4, through `/oauth2/start`).
const MAX_HOPS: usize = 10;

/// Where a sign-in ended.
pub struct SignedIn {
    /// The `Cookie` header the gateway set (its session).
    pub cookie: String,
    /// The URL of the first answer after the provider that was not a redirect.
    pub landed: Url,
    /// Its status.
    pub status: StatusCode,
    /// Its body.
    pub body: Vec<u8>,
}

/// Signs in from `start` (a protected page, or a sign-in route), as `name`
/// and `email` at the development provider. `http` must not follow redirects.
pub async fn sign_in(http: &reqwest::Client, start: Url, name: &str, email: &str) -> Result<SignedIn> {
    let mut jar = Jar::default();
    let mut url = start;
    let mut at_provider = false;
    for _ in 0..MAX_HOPS {
        let mut req = http.get(url.clone()).header(ACCEPT, "text/html");
        if let Some(c) = jar.header() {
            req = req.header(COOKIE, c);
        }
        let r = req.send().await.with_context(|| format!("GET {url}"))?;
        jar.update(r.headers());
        let status = r.status();
        if status.is_redirection() {
            url = next(&url, &r)?;
            continue;
        }
        let body = r.bytes().await?.to_vec();
        if at_provider {
            let cookie = jar.header().context("the gateway set no cookie")?;
            return Ok(SignedIn {
                cookie,
                landed: url,
                status,
                body,
            });
        }
        // Before the provider, every answer but a redirect is its page.
        let page = String::from_utf8_lossy(&body);
        if status != StatusCode::OK {
            bail!(
                "GET {url} answered {status} before the provider's page: {}",
                snippet(&page)
            );
        }
        let form = form(&page).with_context(|| format!("no form on the page at {url}: {}", snippet(&page)))?;
        let fields = form.sign_in_fields(name, email);
        let mut post = http.post(url.join(&form.action)?).form(&fields);
        if let Some(c) = jar.header() {
            post = post.header(COOKIE, c);
        }
        let r = post.send().await.context("POST the provider's sign-in form")?;
        jar.update(r.headers());
        if !r.status().is_redirection() {
            bail!("the provider's sign-in answered {}", r.status());
        }
        url = next(&url, &r)?;
        at_provider = true;
    }
    bail!("the sign-in took more than {MAX_HOPS} redirects (last: {url})")
}

/// Signing in at a gateway from one of its protected pages, checked: the
/// sign-in comes back to that page and the page is the upstream's.
#[derive(Clone)]
pub struct ToPage {
    /// Follows no redirects.
    pub http: reqwest::Client,
    /// The protected page.
    pub start: Url,
    /// What the upstream serves there.
    pub page: Arc<[u8]>,
}

impl ToPage {
    /// Signs in as `name` and `email`, from a fresh cookie jar.
    pub async fn sign_in(&self, name: &str, email: &str) -> Result<SignedIn> {
        let signed = sign_in(&self.http, self.start.clone(), name, email).await?;
        ensure!(
            signed.landed.path() == self.start.path(),
            "the sign-in came back to {} instead of {}",
            signed.landed,
            self.start.path()
        );
        ensure!(
            signed.status == StatusCode::OK && *signed.body == *self.page,
            "after the sign-in {} answered {} and not the upstream's page ({} bytes)",
            self.start.path(),
            signed.status,
            signed.body.len(),
        );
        Ok(signed)
    }
}

impl SignsIn for ToPage {
    async fn sign_in_as(&self, name: &str, email: &str) -> Result<String> {
        Ok(self.sign_in(name, email).await?.cookie)
    }
}

/// The absolute target of a redirect.
fn next(url: &Url, r: &reqwest::Response) -> Result<Url> {
    let loc = r
        .headers()
        .get(LOCATION)
        .with_context(|| format!("{} from {url} has no Location", r.status()))?
        .to_str()?;
    Ok(url.join(loc)?)
}

/// The start of a page, for error messages.
fn snippet(page: &str) -> String {
    page.chars().take(300).collect()
}
