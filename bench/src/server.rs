//! The servers under test: release builds, processes pinned to core 0 with
//! their own data directory, readiness, and what `/proc` says about them
//! (see [`crate::procfs`]). The web servers of the gateway rows (nginx,
//! Apache) run the same way, with their worker processes counted too.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::procfs::ProcStats;

/// The core the servers run on; the load generator gets [`LOAD_CORE`].
pub const SERVER_CORE: &str = "0";
/// The core of the load generator (wrk, and this process).
pub const LOAD_CORE: &str = "1";
/// [`SERVER_CORE`] as an index into [`crate::procfs::cpu_times`].
pub const SERVER_CORE_INDEX: usize = 0;
/// [`LOAD_CORE`] as an index into [`crate::procfs::cpu_times`].
pub const LOAD_CORE_INDEX: usize = 1;
/// How long a server may take to answer after spawn before we give up.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// The release binaries.
pub struct Binaries {
    /// `target/release/oidc-gate`.
    pub oidc_gate: PathBuf,
    /// `target/release/ceiling`.
    pub ceiling: PathBuf,
    /// `target/release/provider`: the development provider on its own.
    pub provider: PathBuf,
    /// `target/release/upstream`: the app behind the gateway rows.
    pub upstream: PathBuf,
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// Builds oidc-gate and the ceiling with the cargo `profile` (`release`
/// for every measurement) and finds them.
pub fn build(root: &Path, profile: &str) -> Result<Binaries> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // What `cargo run` told this binary about itself: crates that read
    // these at compile time would be rebuilt at every switch between
    // `cargo run -p bench` and this build.
    let own: Vec<String> = std::env::vars()
        .map(|(name, _)| name)
        .filter(|n| {
            n.starts_with("CARGO_PKG_")
                || n.starts_with("CARGO_MANIFEST_")
                || n.starts_with("CARGO_BIN_")
                || n == "CARGO_CRATE_NAME"
                || n == "CARGO_PRIMARY_PACKAGE"
        })
        .collect();
    // One package per build, as `cargo run -p bench` selects.
    let builds: [&[&str]; 2] = [&["-p", "bench", "--bins"], &["-p", "oidc-gate", "--bin", "oidc-gate"]];
    for args in builds {
        let mut cmd = Command::new(&cargo);
        for name in &own {
            cmd.env_remove(name);
        }
        let status = cmd
            .current_dir(root)
            .args(["build", "--profile", profile])
            .args(args)
            .status()
            .with_context(|| format!("cannot run {cargo}"))?;
        if !status.success() {
            bail!("cargo build --profile {profile} {} failed ({status})", args.join(" "));
        }
    }
    let meta = Command::new(&cargo)
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cargo metadata")?;
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).context("cargo metadata output")?;
    let target = meta["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    // Cargo keeps the `dev` profile's output in `debug/`.
    let dir = Path::new(target).join(if profile == "dev" { "debug" } else { profile });
    let bins = Binaries {
        oidc_gate: dir.join("oidc-gate"),
        ceiling: dir.join("ceiling"),
        provider: dir.join("provider"),
        upstream: dir.join("upstream"),
    };
    for b in [&bins.oidc_gate, &bins.ceiling, &bins.provider, &bins.upstream] {
        if !b.is_file() {
            bail!("{} is missing after the build", b.display());
        }
    }
    Ok(bins)
}

/// Where oidc-gate keeps sessions (users are in SQLite unless PostgreSQL is chosen).
#[derive(Clone, Debug)]
pub enum Store {
    /// The embedded SQLite database in the data directory.
    Sqlite,
    /// PostgreSQL for users and sessions, in a schema of its own.
    Postgres {
        /// `DATABASE_URL`.
        url: String,
        /// `DATABASE_SCHEMA`.
        schema: String,
    },
    /// Sessions in Redis, users in SQLite.
    Redis {
        /// `SESSION_STORE_URL`.
        url: String,
    },
}

impl Store {
    /// A short name for tables.
    pub fn label(&self) -> &'static str {
        match self {
            Store::Sqlite => "SQLite",
            Store::Postgres { .. } => "PostgreSQL",
            Store::Redis { .. } => "Redis",
        }
    }
}

/// A running server process (oidc-gate or the ceiling), killed on drop.
pub struct Server {
    child: Child,
    /// Its address.
    pub addr: SocketAddr,
    /// Its data directory (holds its log too); removed on drop.
    pub dir: PathBuf,
    /// When it was spawned.
    pub spawned: Instant,
    /// It keeps sessions in PostgreSQL.
    pub postgres: bool,
    /// A web server that serves from worker processes (nginx, Apache): its
    /// CPU is counted over its process tree, and it is stopped with SIGTERM
    /// so that its workers end with it.
    forks: bool,
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> Result<PathBuf> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("oidc-gate-bench-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// A free loopback port (bound and released; the server binds it right after).
pub fn free_addr() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

impl Server {
    /// Starts oidc-gate on a free loopback port with the development
    /// provider, on core 0, with one tokio worker. `dir` is its data
    /// directory and working directory (so no `.env` of ours is read);
    /// `env` adds settings.
    pub fn oidc_gate(bin: &Path, store: &Store, dir: PathBuf, env: &[(&str, &str)]) -> Result<Self> {
        Self::oidc_gate_on(free_addr()?, bin, store, dir, env)
    }

    /// [`Server::oidc_gate`] on a given address.
    pub fn oidc_gate_on(
        addr: SocketAddr,
        bin: &Path,
        store: &Store,
        dir: PathBuf,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        Self::oidc_gate_with(pinned(bin, SERVER_CORE), addr, store, dir, env)
    }

    /// oidc-gate with the development provider and SQLite sessions, on a
    /// free loopback port, run by valgrind's callgrind (one tokio worker,
    /// on core 0): its instruction counts go to `out` (and `out.N` at each
    /// `callgrind_control -d`).
    pub fn oidc_gate_callgrind(bin: &Path, dir: PathBuf, env: &[(&str, &str)], out: &Path) -> Result<Self> {
        let mut cmd = pinned(Path::new("valgrind"), SERVER_CORE);
        cmd.arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(bin);
        Self::oidc_gate_with(cmd, free_addr()?, &Store::Sqlite, dir, env)
    }

    fn oidc_gate_with(
        mut cmd: Command,
        addr: SocketAddr,
        store: &Store,
        dir: PathBuf,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        cmd.current_dir(&dir)
            .env("LISTEN", addr.to_string())
            .env("PUBLIC_URL", format!("http://{addr}"))
            .env("DATA_DIR", &dir)
            .env("RUST_LOG", "warn")
            // Every sign-in of the load comes from one address.
            .env("RATE_LIMITS", "false")
            .envs(env.iter().copied());
        match store {
            Store::Sqlite => {}
            Store::Postgres { url, schema } => {
                cmd.env("DATABASE_URL", url).env("DATABASE_SCHEMA", schema);
            }
            Store::Redis { url } => {
                cmd.env("SESSION_STORE_URL", url);
            }
        }
        let mut server = Self::spawn(cmd, addr, dir)?;
        server.postgres = matches!(store, Store::Postgres { .. });
        Ok(server)
    }

    /// Starts the development provider on its own, on the load core (it is
    /// someone else's server), for one client whose pages are at `base`
    /// and whose redirect URI is `base` + `callback`.
    pub fn provider(bin: &Path, client_id: &str, client_secret: &str, base: &str, callback: &str) -> Result<Self> {
        let dir = temp_dir("provider")?;
        let addr = free_addr()?;
        let mut cmd = pinned(bin, LOAD_CORE);
        cmd.current_dir(&dir)
            .arg(addr.to_string())
            .arg(client_id)
            .arg(client_secret)
            .arg(base)
            .arg(callback);
        Self::spawn(cmd, addr, dir)
    }

    /// Starts the app behind the gateway rows on the load core (it stands
    /// for someone else's app, as the provider stands for someone else's
    /// provider).
    pub fn upstream(bin: &Path) -> Result<Self> {
        let dir = temp_dir("upstream")?;
        let addr = free_addr()?;
        let mut cmd = pinned(bin, LOAD_CORE);
        cmd.current_dir(&dir).arg(addr.to_string());
        Self::spawn(cmd, addr, dir)
    }

    /// Starts a web server (`program` with `args`, a config in `dir` that
    /// listens on `addr`) on core 0 with a clean environment. Its workers
    /// inherit the pinning; its CPU is counted over all of them.
    pub fn web_server(program: &Path, args: &[&str], addr: SocketAddr, dir: PathBuf) -> Result<Self> {
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(SERVER_CORE).arg(program).args(args).env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.current_dir(&dir);
        let mut server = Self::spawn(cmd, addr, dir)?;
        server.forks = true;
        Ok(server)
    }

    /// Starts the ceiling serving `body` with `headers` (`name: value` lines) at `/secret`.
    pub fn ceiling(bin: &Path, body: &[u8], headers: &str) -> Result<Self> {
        let dir = temp_dir("ceiling")?;
        let addr = free_addr()?;
        std::fs::write(dir.join("body.html"), body)?;
        std::fs::write(dir.join("headers.txt"), headers)?;
        let mut cmd = pinned(bin, SERVER_CORE);
        cmd.current_dir(&dir)
            .arg(addr.to_string())
            .arg(dir.join("body.html"))
            .arg(dir.join("headers.txt"));
        Self::spawn(cmd, addr, dir)
    }

    fn spawn(mut cmd: Command, addr: SocketAddr, dir: PathBuf) -> Result<Self> {
        let log = File::create(dir.join("server.log"))?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let spawned = Instant::now();
        let child = cmd.spawn().context("spawn the server (is `taskset` installed?)")?;
        Ok(Self {
            child,
            addr,
            dir,
            spawned,
            postgres: false,
            forks: false,
        })
    }

    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The process id (`taskset` execs the server, so it is the server's own).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a TCP connect succeeds; returns the time since spawn.
    pub fn wait_listening(&mut self) -> Result<Duration> {
        let deadline = self.spawned + READY_LIMIT;
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
                return Ok(self.spawned.elapsed());
            }
            self.check_alive()?;
            std::thread::sleep(Duration::from_micros(500));
        }
        bail!("the server did not listen within {READY_LIMIT:?}; {}", self.log_tail())
    }

    /// Waits until `GET path` answers `200`; returns the time since spawn.
    pub fn wait_answering(&mut self, path: &str) -> Result<Duration> {
        self.wait_answering_within(path, READY_LIMIT)
    }

    /// [`Server::wait_answering`] with a limit of its own.
    pub fn wait_answering_within(&mut self, path: &str, limit: Duration) -> Result<Duration> {
        let deadline = self.spawned + limit;
        while Instant::now() < deadline {
            if http_status(self.addr, path).is_ok_and(|s| s == 200) {
                return Ok(self.spawned.elapsed());
            }
            self.check_alive()?;
            std::thread::sleep(Duration::from_micros(500));
        }
        bail!("GET {path} did not answer 200 within {limit:?}{}", self.log_tail())
    }

    /// Stops the process and hands over its directory instead of removing it.
    pub fn stop_keep_dir(mut self) -> PathBuf {
        self.stop();
        std::mem::take(&mut self.dir)
    }

    /// Fails with the log's tail if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the server exited ({status}); {}", self.log_tail());
        }
        Ok(())
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        if tail.is_empty() {
            "the server logged nothing".into()
        } else {
            format!("the server's log ends with:\n{tail}")
        }
    }

    /// Resident memory and CPU time so far (of all its processes, for a
    /// web server with workers).
    pub fn stats(&self) -> Result<ProcStats> {
        if self.forks {
            ProcStats::of_tree(self.pid())
        } else {
            ProcStats::of(self.pid())
        }
    }

    /// Kills the process and waits for it; keeps the directory. A web
    /// server gets SIGTERM first (SIGKILL would leave its workers serving)
    /// and a few seconds to stop them.
    pub fn stop(&mut self) {
        if self.forks && matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &self.pid().to_string()])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The status of a bare `GET path` over a new connection (no client library,
/// so that polling costs next to nothing).
fn http_status(addr: SocketAddr, path: &str) -> Result<u16> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(100))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    // "HTTP/1.1 200"
    Ok(std::str::from_utf8(&head[9..12])?.parse()?)
}

/// `taskset -c <core> <bin>` with a clean environment and one tokio worker.
fn pinned(bin: &Path, core: &str) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(core).arg(bin).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("TOKIO_WORKER_THREADS", "1");
    cmd
}

/// Whether `program` is an executable on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Pins this process (all its threads so far, and every thread and child it
/// starts later) to the load generator's core.
pub fn pin_self_to_load_core() -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", LOAD_CORE, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .context("run taskset")?;
    if !status.success() {
        bail!("taskset -p -c {LOAD_CORE} failed ({status})");
    }
    Ok(())
}
