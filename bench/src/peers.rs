//! The other web servers of the gateway rows, started the way the
//! benchmark starts oidc-gate: a generated configuration in a temporary
//! directory, a free loopback port, in the foreground, pinned to core 0.
//!
//! - nginx reverse-proxying the upstream with no authentication at all:
//!   the baseline of oidc-gate's reverse proxy.
//! - Apache 2 with mod_auth_openidc as an authenticating reverse proxy to
//!   the same upstream, signing in at the bench's own provider: the peer.
//!
//! Both are Debian packages; when one is missing its row is skipped with a
//! note that says what to install.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::server::{Server, free_addr, temp_dir};

/// Where Debian puts Apache's modules.
const APACHE_MODULES: &str = "/usr/lib/apache2/modules";

/// An executable on `PATH` or in the system directories (`/usr/sbin` is
/// not on every user's `PATH`).
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// nginx, or why its row cannot run.
pub fn nginx() -> Result<PathBuf, String> {
    program("nginx").ok_or_else(|| "nginx is not installed (Debian: apt-get install -y nginx)".into())
}

/// Apache's binary and its modules directory with mod_auth_openidc, or why
/// its row cannot run.
pub fn apache() -> Result<(PathBuf, PathBuf), String> {
    let bin = program("apache2").ok_or("Apache is not installed (Debian: apt-get install -y apache2)")?;
    let modules = PathBuf::from(APACHE_MODULES);
    if !modules.join("mod_auth_openidc.so").is_file() {
        return Err(format!(
            "mod_auth_openidc is not installed ({APACHE_MODULES}/mod_auth_openidc.so is missing; Debian: \
             apt-get install -y libapache2-mod-auth-openidc)"
        ));
    }
    Ok((bin, modules))
}

/// Starts nginx in front of `upstream` (see [`write_nginx_conf`]) and
/// waits until it answers `GET probe` with 200.
pub fn start_nginx(bin: &Path, upstream: SocketAddr, probe: &str) -> Result<Server> {
    let dir = temp_dir("nginx")?;
    let addr = free_addr()?;
    let args = write_nginx_conf(&dir, addr, upstream)?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::web_server(bin, &args, addr, dir)?;
    server.wait_answering(probe)?;
    Ok(server)
}

/// Writes nginx's configuration into `dir` and returns nginx's arguments:
/// listening on `addr`, in front of `upstream`, one worker process
/// (oidc-gate runs one tokio worker), keep-alive connections to the
/// upstream, the `X-Forwarded-*` headers oidc-gate sets too, no access log
/// (oidc-gate logs at `warn`), in the foreground.
fn write_nginx_conf(dir: &Path, addr: SocketAddr, upstream: SocketAddr) -> Result<Vec<String>> {
    let d = dir.display();
    let conf = format!(
        "daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream app {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen {addr};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }}
    }}
}}
"
    );
    let file = dir.join("nginx.conf");
    std::fs::write(&file, conf).context("write nginx.conf")?;
    Ok(vec![
        "-e".into(),
        "stderr".into(),
        "-p".into(),
        format!("{d}/"),
        "-c".into(),
        file.display().to_string(),
    ])
}

/// The relying party settings of the Apache row.
pub struct OidcClient<'a> {
    /// The provider's issuer (discovery at `/.well-known/openid-configuration` below it).
    pub issuer: &'a str,
    /// The client id.
    pub client_id: &'a str,
    /// The client secret.
    pub client_secret: &'a str,
}

/// The path of mod_auth_openidc's redirect URI on the Apache row.
const APACHE_CALLBACK: &str = "/redirect_uri";

/// Starts the bench's provider (`provider_bin`, its own process on core 1)
/// with a client for Apache, and Apache with mod_auth_openidc in front of
/// `upstream` signing in at the provider's issuer under `issuer_prefix`
/// (`""`: ES256; `/rs256`: RS256, see `bench/src/bin/provider.rs`).
/// Returns the provider and Apache, listening.
pub fn start_apache_at_provider(
    provider_bin: &Path,
    bin: &Path,
    modules: &Path,
    upstream: SocketAddr,
    issuer_prefix: &str,
) -> Result<(Server, Server)> {
    let addr = free_addr()?;
    let secret = format!("bench-apache-{}", std::process::id());
    let base = format!("http://{addr}");
    let mut provider = Server::provider(provider_bin, "bench-apache", &secret, &base, APACHE_CALLBACK)?;
    let issuer = provider.url(&format!("{issuer_prefix}/dev-provider"));
    provider.wait_answering(&format!(
        "{issuer_prefix}/dev-provider/.well-known/openid-configuration"
    ))?;
    let client = OidcClient {
        issuer: &issuer,
        client_id: "bench-apache",
        client_secret: &secret,
    };
    let apache = start_apache(bin, modules, addr, upstream, &client)?;
    Ok((provider, apache))
}

/// Starts Apache on `addr` with mod_auth_openidc in front of `upstream`
/// (see [`write_apache_conf`]) and waits until it listens.
fn start_apache(
    bin: &Path,
    modules: &Path,
    addr: SocketAddr,
    upstream: SocketAddr,
    oidc: &OidcClient,
) -> Result<Server> {
    let dir = temp_dir("apache")?;
    let mut args = write_apache_conf(&dir, modules, addr, upstream, oidc)?;
    args.push("-DFOREGROUND".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::web_server(bin, &args, addr, dir)?;
    server.wait_listening()?;
    Ok(server)
}

/// Writes Apache's configuration into `dir` (its ServerRoot) and returns
/// Apache's arguments: listening on `addr`; every path needs a
/// mod_auth_openidc session (discovery, code flow with PKCE, a confidential
/// client, sessions in its default shared-memory cache), then goes to
/// `upstream` through mod_proxy_http, whose connections to it are kept
/// alive; one child process with 64 threads (the event MPM).
fn write_apache_conf(
    dir: &Path,
    modules: &Path,
    addr: SocketAddr,
    upstream: SocketAddr,
    oidc: &OidcClient,
) -> Result<Vec<String>> {
    let d = dir.display();
    let m = modules.display();
    let mut conf = format!(
        "ServerRoot \"{d}\"
DefaultRuntimeDir \"{d}\"
PidFile \"{d}/apache.pid\"
ServerName 127.0.0.1
Listen {addr}
ErrorLog /dev/stderr
LogLevel warn
"
    );
    if running_as_root() {
        // Apache will not serve as root; its children become `nobody`.
        conf.push_str("User #65534\nGroup #65534\n");
    }
    for module in [
        "mpm_event",
        "authn_core",
        "authz_core",
        "authz_user",
        "proxy",
        "proxy_http",
        "auth_openidc",
    ] {
        let _ = writeln!(conf, "LoadModule {module}_module \"{m}/mod_{module}.so\"");
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let passphrase = format!("bench-{}-{nanos}", std::process::id());
    let _ = write!(
        conf,
        "StartServers 1
ServerLimit 1
ThreadLimit 64
ThreadsPerChild 64
MaxRequestWorkers 64
MinSpareThreads 1
MaxSpareThreads 64
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30

OIDCProviderMetadataURL {issuer}/.well-known/openid-configuration
OIDCClientID {client_id}
OIDCClientSecret {client_secret}
OIDCRedirectURI http://{addr}{APACHE_CALLBACK}
OIDCCryptoPassphrase {passphrase}
OIDCPKCEMethod S256
OIDCScope \"openid email profile\"
OIDCRemoteUserClaim sub
OIDCSessionInactivityTimeout 3600

<Location />
    AuthType openid-connect
    Require valid-user
</Location>
ProxyPass {APACHE_CALLBACK} !
ProxyPass / http://{upstream}/
ProxyPassReverse / http://{upstream}/
",
        issuer = oidc.issuer,
        client_id = oidc.client_id,
        client_secret = oidc.client_secret,
    );
    let file = dir.join("apache2.conf");
    std::fs::write(&file, conf).context("write apache2.conf")?;
    Ok(vec![
        "-d".into(),
        d.to_string(),
        "-f".into(),
        file.display().to_string(),
    ])
}

/// Whether this process runs as root (`Uid:` of `/proc/self/status`).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1))
            == Some("0")
    })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// Runs `bin` with `args` and `-t` (check the configuration and exit);
    /// fails with what it printed.
    fn config_test(bin: &Path, args: &[String]) {
        let out = Command::new(bin).args(args).arg("-t").output().unwrap();
        assert!(
            out.status.success(),
            "{} -t refused the configuration:\n{}{}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn nginx_accepts_its_configuration() {
        let Ok(bin) = nginx() else {
            eprintln!("nginx is not installed: not checked");
            return;
        };
        let dir = temp_dir("nginx-test").unwrap();
        let args = write_nginx_conf(&dir, free_addr().unwrap(), free_addr().unwrap()).unwrap();
        config_test(&bin, &args);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn apache_accepts_its_configuration() {
        let Ok((bin, modules)) = apache() else {
            eprintln!("Apache or mod_auth_openidc is not installed: not checked");
            return;
        };
        let dir = temp_dir("apache-test").unwrap();
        let oidc = OidcClient {
            issuer: "http://127.0.0.1:9/dev-provider",
            client_id: "bench",
            client_secret: "secret",
        };
        let args = write_apache_conf(&dir, &modules, free_addr().unwrap(), free_addr().unwrap(), &oidc).unwrap();
        config_test(&bin, &args);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
