//! A browser for the benchmark: logs in through the development provider the
//! way a person would (no redirects followed, one cookie jar per login), and
//! fetches pages with a given session. One HTTP client (keep-alive pool) is
//! shared by all logins; each login keeps its own session cookie.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};
use url::Url;

/// The sentence of the secret page.
pub const SECRET: &str = "Only logged in user can see this.";
/// The session cookie's name over plain http.
pub const COOKIE_NAME: &str = "oidc_gate";

/// A client of one oidc-gate.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
}

/// One login's cookie jar: every cookie oidc-gate sets (the session, the
/// login in progress); the development provider sets none.
#[derive(Default)]
pub struct Jar(Vec<(String, String)>);

impl Jar {
    /// The `Cookie` header value of every cookie held; `None` when empty.
    pub fn header(&self) -> Option<String> {
        let pairs: Vec<String> = self.0.iter().map(|(name, value)| format!("{name}={value}")).collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    fn session(&self) -> Option<String> {
        self.0
            .iter()
            .find(|(name, _)| name == COOKIE_NAME)
            .map(|(_, id)| id.clone())
    }

    /// Takes the cookies `Set-Cookie` sets (and drops those it expires).
    pub fn update(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            let mut parts = value.split(';').map(str::trim);
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            self.0.retain(|(n, _)| n != name);
            let removed = value.is_empty() || parts.any(|p| p.eq_ignore_ascii_case("max-age=0"));
            if !removed {
                self.0.push((name.to_owned(), value.to_owned()));
            }
        }
    }
}

impl Client {
    /// A client of the oidc-gate at `base` (e.g. `http://127.0.0.1:1234`).
    pub fn new(base: &str) -> Result<Self> {
        Self::keeping(base, 256)
    }

    /// A client of the oidc-gate at `base` that opens a fresh connection for
    /// every request, as browsers signing in now and then do.
    pub fn fresh_connections(base: &str) -> Result<Self> {
        Self::keeping(base, 0)
    }

    /// A client keeping at most `idle` connections open between requests.
    fn keeping(base: &str, idle: usize) -> Result<Self> {
        Ok(Self {
            http: browser(idle)?,
            base: Url::parse(base)?,
        })
    }

    async fn get(&self, url: &Url, jar: &mut Jar) -> Result<Response> {
        let mut req = self.http.get(url.clone());
        if let Some(c) = jar.header() {
            req = req.header(COOKIE, c);
        }
        let r = req.send().await.with_context(|| format!("GET {}", url.path()))?;
        jar.update(r.headers());
        Ok(r)
    }

    /// A full login from `GET /secret` to the secret page, with a fresh jar;
    /// returns the logged-in session id.
    pub async fn login(&self, name: &str, email: &str) -> Result<String> {
        let mut jar = Jar::default();
        let secret = self.base.join("/secret")?;
        let r = self.get(&secret, &mut jar).await?;
        let mut authorize = redirect(&r, StatusCode::SEE_OTHER, "GET /secret without a session")?;
        let mut r = self.get(&authorize, &mut jar).await?;
        // The redirects up to the provider's page: none now (/secret goes
        // straight to the provider), `/login` first in older versions.
        for _ in 0..MAX_HOPS_TO_PROVIDER {
            if r.status() != StatusCode::SEE_OTHER {
                break;
            }
            authorize = redirect(&r, StatusCode::SEE_OTHER, "GET /secret's sign-in")?;
            r = self.get(&authorize, &mut jar).await?;
        }
        ensure!(
            r.status() == StatusCode::OK,
            "the provider's page answered {}",
            r.status()
        );
        let page = r.text().await?;
        let form = form(&page).context("no form on the development provider's page")?;
        let fields = form.sign_in_fields(name, email);
        let mut post = self.http.post(authorize.join(&form.action)?).form(&fields);
        if let Some(c) = jar.header() {
            post = post.header(COOKIE, c);
        }
        let r = post.send().await.context("POST the sign-in form")?;
        jar.update(r.headers());
        let callback = redirect(&r, StatusCode::SEE_OTHER, "the provider's sign-in")?;
        let r = self.get(&callback, &mut jar).await?;
        let back = redirect(&r, StatusCode::SEE_OTHER, "GET /callback")?;
        ensure!(
            back.path() == "/secret",
            "the callback sent us to {} instead of /secret",
            back
        );
        let r = self.get(&back, &mut jar).await?;
        ensure!(
            r.status() == StatusCode::OK,
            "GET /secret after login answered {}",
            r.status()
        );
        ensure!(r.text().await?.contains(SECRET), "the secret page lacks its sentence");
        jar.session().context("no session cookie after login")
    }

    /// `GET path` with the session `id`: status, headers and body.
    pub async fn fetch(&self, path: &str, id: &str) -> Result<(StatusCode, HeaderMap, Vec<u8>)> {
        let r = self
            .http
            .get(self.base.join(path)?)
            .header(COOKIE, format!("{COOKIE_NAME}={id}"))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = r.status();
        let headers = r.headers().clone();
        Ok((status, headers, r.bytes().await?.to_vec()))
    }

    /// Logs session `id` out (so no session of ours stays in a shared store).
    pub async fn logout(&self, id: &str) -> Result<()> {
        let (_, _, page) = self.fetch("/", id).await?;
        let page = String::from_utf8_lossy(&page);
        let csrf = form(&page)
            .and_then(|f| f.inputs.into_iter().find(|(k, _)| k == "csrf"))
            .context("no logout form on the home page")?
            .1;
        let r = self
            .http
            .post(self.base.join("/logout")?)
            .header(COOKIE, format!("{COOKIE_NAME}={id}"))
            .header("origin", self.base.origin().ascii_serialization())
            .form(&[("csrf", csrf)])
            .send()
            .await?;
        ensure!(
            r.status() == StatusCode::SEE_OTHER,
            "POST /logout answered {}",
            r.status()
        );
        Ok(())
    }

    /// Checks that session `id` sees the secret page.
    pub async fn check_secret(&self, id: &str) -> Result<()> {
        let (status, _, body) = self.fetch("/secret", id).await?;
        ensure!(
            status == StatusCode::OK,
            "GET /secret with the session answered {status}"
        );
        ensure!(
            String::from_utf8_lossy(&body).contains(SECRET),
            "the secret page lacks its sentence"
        );
        Ok(())
    }
}

/// An HTTP client as the benchmark's browsers use it: no redirects
/// followed, at most `idle` connections kept open per host between
/// requests (0: a fresh connection for every request).
pub fn browser(idle: usize) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(idle)
        .build()?)
}

/// A way to sign a fresh browser in, for [`login_many`]: oidc-gate's own
/// login ([`Client`]), or any gateway's by following its redirects
/// ([`crate::signin::ToPage`], Apache's mod_auth_openidc).
pub trait SignsIn: Clone + Send + Sync + 'static {
    /// One full sign-in with a fresh cookie jar as `name` and `email`,
    /// checked; returns the session (its id or its `Cookie` header).
    fn sign_in_as(&self, name: &str, email: &str) -> impl Future<Output = Result<String>> + Send;
}

impl SignsIn for Client {
    fn sign_in_as(&self, name: &str, email: &str) -> impl Future<Output = Result<String>> + Send {
        self.login(name, email)
    }
}

/// The absolute target of a redirect with `status`.
fn redirect(r: &Response, status: StatusCode, what: &str) -> Result<Url> {
    if r.status() != status {
        bail!("{what}: expected {status}, got {}", r.status());
    }
    let loc = r
        .headers()
        .get(LOCATION)
        .with_context(|| format!("{what}: no Location"))?
        .to_str()?;
    Ok(r.url().join(loc)?)
}

/// Redirects from `/secret` to the provider's page that [`Client::login`]
/// follows (one now; two through `/login` in older versions).
const MAX_HOPS_TO_PROVIDER: usize = 3;

/// Runs `n` logins, `concurrency` at a time, each with a fresh jar and its
/// own user (`bench-<i>@example.com`, `i` from `first`); returns the
/// sessions and the time taken.
pub async fn login_many(
    client: &impl SignsIn,
    n: usize,
    concurrency: usize,
    first: usize,
) -> Result<(Vec<String>, Duration)> {
    run_many(n, concurrency, {
        let client = client.clone();
        move |i| {
            let client = client.clone();
            async move {
                let i = first + i;
                client
                    .sign_in_as(&format!("Bench User {i}"), &format!("bench-{i}@example.com"))
                    .await
            }
        }
    })
    .await
}

/// Requests `/secret` once with each session of `ids`, `concurrency` at a
/// time, checking each gets the page; returns the time taken.
pub async fn visit_all(client: &Client, ids: Arc<Vec<String>>, concurrency: usize) -> Result<Duration> {
    let (_, elapsed) = run_many(ids.len(), concurrency, {
        let client = client.clone();
        move |i| {
            let client = client.clone();
            let ids = ids.clone();
            async move { client.check_secret(&ids[i]).await }
        }
    })
    .await?;
    Ok(elapsed)
}

/// Runs `job(0..n)` on `concurrency` tasks; stops at the first error.
async fn run_many<T, F, Fut>(n: usize, concurrency: usize, job: F) -> Result<(Vec<T>, Duration)>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let next = next.clone();
        let job = job.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(out);
                }
                match job(i).await {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        // Make the other workers stop too.
                        next.store(n, Ordering::Relaxed);
                        return Err(e.context(format!("request {} of {n}", i + 1)));
                    }
                }
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, start.elapsed()))
}

/// A form: its action and its named inputs with values.
pub struct Form {
    /// Where it posts to (relative to the page).
    pub action: String,
    /// Its named inputs and their values.
    pub inputs: Vec<(String, String)>,
}

impl Form {
    /// The development provider's form filled in to sign in as `name` and `email`.
    pub fn sign_in_fields(&self, name: &str, email: &str) -> Vec<(String, String)> {
        let mut fields = self.inputs.clone();
        for (k, v) in fields.iter_mut() {
            match k.as_str() {
                "name" => *v = name.to_owned(),
                "email" => *v = email.to_owned(),
                _ => {}
            }
        }
        fields.push(("action".into(), "sign_in".into()));
        fields
    }
}

/// The first `<form>` of `html` with its `<input>` fields (just enough HTML
/// reading for the development provider's page).
pub fn form(html: &str) -> Option<Form> {
    let start = html.find("<form")?;
    let end = html[start..].find("</form>").map_or(html.len(), |e| start + e);
    let body = &html[start..end];
    let tag_end = body.find('>')?;
    let action = attr(&body[..tag_end], "action").unwrap_or_default();
    let mut inputs = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("<input") {
        let tag = &rest[i..];
        let close = tag.find('>').unwrap_or(tag.len());
        if let Some(name) = attr(&tag[..close], "name") {
            inputs.push((name, attr(&tag[..close], "value").unwrap_or_default()));
        }
        rest = &tag[close..];
    }
    Some(Form { action, inputs })
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_providers_form() {
        let html = r#"<p>x</p><form method="post" action="http:&#x2f;&#x2f;h&#x2f;authorize">
            <input type="hidden" name="state" value="a&amp;b"><input id="name" name="name" value="Ada">
            <button name="action" value="sign_in">Sign in</button></form>"#;
        let f = form(html).unwrap();
        assert_eq!(f.action, "http://h/authorize");
        assert_eq!(
            f.inputs,
            vec![("state".into(), "a&b".into()), ("name".into(), "Ada".into())]
        );
    }

    #[test]
    fn the_jar_follows_set_cookie() {
        let mut jar = Jar::default();
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, "other=1; Path=/".parse().unwrap());
        h.append(SET_COOKIE, "oidc_gate=abc; HttpOnly; Path=/".parse().unwrap());
        jar.update(&h);
        assert_eq!(jar.header().as_deref(), Some("other=1; oidc_gate=abc"));
        assert_eq!(jar.session().as_deref(), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, "oidc_gate=; Max-Age=0; Path=/".parse().unwrap());
        h.append(SET_COOKIE, "other=2; Path=/".parse().unwrap());
        jar.update(&h);
        assert_eq!(jar.header().as_deref(), Some("other=2"));
        assert_eq!(jar.session(), None);
    }
}
