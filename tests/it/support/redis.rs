//! Real Redis deployments for the tests, from the system's `redis-server`
//! and `redis-cli` (Debian's `redis-server` package): a Cluster of three
//! primaries, and a Sentinel setup (a primary, its replica, one Sentinel).
//! Each binds 127.0.0.1 on free ports with configs generated in a temporary
//! directory; every process is killed when its handle drops.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Whether `redis-server` and `redis-cli` are installed. Where CI says so
/// (`CI=true`) they must be: a missing one is a failure, not a skip.
pub fn installed() -> bool {
    let runs = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let found = runs("redis-server") && runs("redis-cli");
    if !found && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("redis-server and redis-cli must be installed in CI (Debian package redis-server)");
    }
    found
}

/// The Cluster shared by the tests running at the same time (see [`shared`]).
pub fn shared_cluster() -> Arc<Cluster> {
    static CLUSTER: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
    shared(&CLUSTER, Cluster::start)
}

/// The Sentinel setup shared by the tests running at the same time; a test
/// that fails it over starts its own.
pub fn shared_sentinel_set() -> Arc<SentinelSet> {
    static SENTINEL: Mutex<Weak<SentinelSet>> = Mutex::new(Weak::new());
    // No failover wanted here, even on a machine so busy that Redis stalls.
    shared(&SENTINEL, || SentinelSet::start(Duration::from_secs(60)))
}

/// One deployment shared by the tests running at the same time, started by
/// the first that asks and stopped when the last one drops it.
fn shared<T>(slot: &'static Mutex<Weak<T>>, start: fn() -> T) -> Arc<T> {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(running) = slot.upgrade() {
        return running;
    }
    let started = Arc::new(start());
    *slot = Arc::downgrade(&started);
    started
}

/// A free loopback port (the kernel's choice).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `ready` every 20 ms until it holds, for at most 20 s.
fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A password for the servers, safe in a URL's user information.
fn password() -> String {
    oidc_gate::secret::random_token(12).replace(['-', '_'], "x")
}

/// One `redis-server` process, killed on drop.
pub struct Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    password: Option<String>,
    child: Child,
}

impl Server {
    /// Starts `redis-server` (a Sentinel if `sentinel`) with `config` plus
    /// its port and files in `dir`; waits until it answers.
    fn start(dir: &Path, config: &str, password: Option<&str>, sentinel: bool) -> Self {
        let port = free_port();
        let mut full = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/{port}.log\n",
            dir = dir.display()
        );
        if !sentinel {
            full.push_str("save \"\"\nappendonly no\n");
        }
        full.push_str(config);
        let file = dir.join(format!("{port}.conf"));
        std::fs::write(&file, full).unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.arg(&file).stdout(Stdio::null()).stderr(Stdio::null());
        if sentinel {
            cmd.arg("--sentinel");
        }
        let mut server = Self {
            port,
            password: password.map(str::to_owned),
            child: cmd.spawn().expect("redis-server runs"),
        };
        until(&format!("redis-server on port {port}"), || {
            if let Some(status) = server.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.join(format!("{port}.log"))).unwrap_or_default();
                panic!("redis-server on port {port} exited ({status}):\n{log}");
            }
            server.cli(&["PING"]) == "PONG"
        });
        server
    }

    /// `redis-cli` against this server; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            cmd.args(["--no-auth-warning", "-a", password]);
        }
        let out = cmd.args(args).stdin(Stdio::null()).output().expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The value of `field` in `INFO section`.
    pub fn info(&self, section: &str, field: &str) -> Option<String> {
        let prefix = format!("{field}:");
        self.cli(&["INFO", section])
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_owned()))
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three primaries (no replicas), with a password.
pub struct Cluster {
    /// The primaries.
    pub nodes: Vec<Server>,
    password: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the three servers, joins them into a cluster with
    /// `redis-cli --cluster create` and waits until every node says
    /// `cluster_state:ok`.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let password = password();
        let nodes: Vec<Server> = (0..3)
            .map(|_| {
                // The cluster bus port on a free port too (not the usual port + 10000).
                let config = format!(
                    "cluster-enabled yes\ncluster-config-file nodes-{bus}.conf\ncluster-port {bus}\n\
                     requirepass {password}\nmasterauth {password}\n",
                    bus = free_port()
                );
                Server::start(dir.path(), &config, Some(&password), false)
            })
            .collect();
        let out = Command::new("redis-cli")
            .args(["--no-auth-warning", "-a", &password, "--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for node in &nodes {
            until("cluster_state:ok", || {
                node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
            });
        }
        Self {
            nodes,
            password,
            _dir: dir,
        }
    }

    /// `SESSION_STORE_URL` for this cluster.
    pub fn url(&self) -> String {
        let [first, others @ ..] = &self.nodes[..] else {
            unreachable!()
        };
        let others: Vec<String> = others.iter().map(|n| format!("node=127.0.0.1:{}", n.port)).collect();
        format!(
            "redis-cluster://:{}@127.0.0.1:{}?{}",
            self.password,
            first.port,
            others.join("&")
        )
    }
}

/// The name Sentinel knows the primary by.
pub const SERVICE: &str = "gate";

/// A primary and its replica (both with a password), watched by one
/// Sentinel (without one) that promotes the replica on its own (quorum 1).
/// One Sentinel keeps the tests fast; three would only add the vote.
pub struct SentinelSet {
    /// The primary at the start.
    pub primary: Server,
    /// Its replica.
    pub replica: Server,
    /// The Sentinel.
    pub sentinel: Server,
    password: String,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    /// Starts the primary, the replica (waiting until it is in sync), then
    /// the Sentinel (waiting until it knows the replica as a healthy one),
    /// which takes the primary for down after it missed it for `down_after`.
    pub fn start(down_after: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let password = password();
        let auth = format!("requirepass {password}\nmasterauth {password}\n");
        let primary = Server::start(dir.path(), &auth, Some(&password), false);
        let replica = Server::start(
            dir.path(),
            &format!("{auth}replicaof 127.0.0.1 {}\n", primary.port),
            Some(&password),
            false,
        );
        until("the replica's sync", || {
            replica.info("replication", "master_link_status").as_deref() == Some("up")
        });
        let config = format!(
            "sentinel monitor {SERVICE} 127.0.0.1 {primary} 1\n\
             sentinel auth-pass {SERVICE} {password}\n\
             sentinel down-after-milliseconds {SERVICE} {down}\n\
             sentinel failover-timeout {SERVICE} 10000\n",
            primary = primary.port,
            down = down_after.as_millis()
        );
        let sentinel = Server::start(dir.path(), &config, None, true);
        until("Sentinel to know the replica", || {
            let replicas = sentinel.cli(&["SENTINEL", "REPLICAS", SERVICE]);
            let fields: Vec<&str> = replicas.lines().collect();
            let field = |name: &str| fields.iter().position(|f| *f == name).and_then(|i| fields.get(i + 1));
            field("port") == Some(&replica.port.to_string().as_str())
                && field("flags") == Some(&"slave")
                && field("master-link-status") == Some(&"ok")
        });
        Self {
            primary,
            replica,
            sentinel,
            password,
            _dir: dir,
        }
    }

    /// `SESSION_STORE_URL` for the primary Sentinel names.
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://:{}@127.0.0.1:{}/0?sentinelServiceName={SERVICE}",
            self.password, self.sentinel.port
        )
    }

    /// The password of the Redis servers.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The port of the primary Sentinel names now.
    pub fn primary_port(&self) -> Option<u16> {
        let addr = self.sentinel.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]);
        addr.lines().nth(1).and_then(|p| p.parse().ok())
    }

    /// Waits until the replica has everything the primary has written
    /// (its replication offset caught up with the primary's).
    pub fn wait_replicated(&self) {
        let offset = |server: &Server, field| {
            server
                .info("replication", field)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let written = offset(&self.primary, "master_repl_offset");
        until("the replica to catch up", || {
            offset(&self.replica, "slave_repl_offset") >= written
        });
    }
}
