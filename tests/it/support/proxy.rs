//! A TCP proxy the tests can cut: stands between the app and a store to
//! simulate an outage (every connection dropped, new ones refused) and its end.
//!
//! It can also act on what the app sends: cut everything when a command
//! contains a pattern, or hold back the store's answers on that connection,
//! so a test can make a store fail, or act, between two steps of one request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What happens when the app next sends the armed pattern.
#[derive(Clone)]
enum Trigger {
    /// Cut, as [`Proxy::cut`], before the bytes reach the store.
    Cut,
    /// Forward them, then hold the store's answers on that connection.
    Hold(Hold),
}

/// Answers held on one connection until [`Hold::release`].
#[derive(Clone)]
pub struct Hold {
    engaged: watch::Sender<bool>,
    released: watch::Sender<bool>,
}

impl Hold {
    /// Waits until the pattern was sent and the answers are held.
    pub async fn engaged(&self) {
        let mut rx = self.engaged.subscribe();
        rx.wait_for(|e| *e).await.expect("the hold lives");
    }

    /// Lets the answers through.
    pub fn release(&self) {
        self.released.send_replace(true);
    }
}

struct Shared {
    target: SocketAddr,
    up: AtomicBool,
    generation: watch::Sender<u64>,
    armed: Mutex<Option<(&'static [u8], Trigger)>>,
}

impl Shared {
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// The trigger, if `bytes` contain the armed pattern (once).
    fn fired(&self, bytes: &[u8]) -> Option<Trigger> {
        let mut armed = self.armed.lock().unwrap();
        let (pattern, _) = armed.as_ref()?;
        bytes
            .windows(pattern.len())
            .any(|w| w == *pattern)
            .then(|| armed.take().unwrap().1)
    }
}

/// A running proxy.
pub struct Proxy {
    /// Where to connect instead of the target.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Proxies 127.0.0.1:<random> to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            target,
            up: AtomicBool::new(true),
            generation: watch::channel(0u64).0,
            armed: Mutex::new(None),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !accepting.up.load(Ordering::SeqCst) {
                    drop(inbound); // refused while cut
                    continue;
                }
                tokio::spawn(relay(accepting.clone(), inbound));
            }
        });
        Self { addr, shared, task }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.shared.cut();
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }

    /// Cuts (as [`Proxy::cut`]) when the app next sends bytes containing
    /// `pattern`, which then never reach the store. A pattern is looked for
    /// in each read on its own: keep it shorter than one command.
    pub fn cut_when_sent(&self, pattern: &'static [u8]) {
        *self.shared.armed.lock().unwrap() = Some((pattern, Trigger::Cut));
    }

    /// When the app next sends bytes containing `pattern`, they reach the
    /// store, and its answers on that connection are held until released.
    pub fn hold_answers_after(&self, pattern: &'static [u8]) -> Hold {
        let hold = Hold {
            engaged: watch::channel(false).0,
            released: watch::channel(false).0,
        };
        *self.shared.armed.lock().unwrap() = Some((pattern, Trigger::Hold(hold.clone())));
        hold
    }
}

/// Relays one connection until either side closes or the proxy is cut.
async fn relay(shared: Arc<Shared>, mut inbound: TcpStream) {
    let mut cut = shared.generation.subscribe();
    let Ok(mut outbound) = TcpStream::connect(shared.target).await else {
        return;
    };
    let (mut from_app, mut to_app) = inbound.split();
    let (mut from_store, mut to_store) = outbound.split();
    let hold: watch::Sender<Option<Hold>> = watch::channel(None).0;
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from_app.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            match shared.fired(&buf[..n]) {
                Some(Trigger::Cut) => return shared.cut(),
                Some(Trigger::Hold(h)) => {
                    hold.send_replace(Some(h.clone()));
                    h.engaged.send_replace(true);
                }
                None => {}
            }
            if to_store.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from_store.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            let held = hold.borrow().clone();
            if let Some(h) = held {
                let _ = h.released.subscribe().wait_for(|r| *r).await;
            }
            if to_app.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.changed() => {} // dropping both ends closes them
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
