//! Rate limits per client address on the routes anonymous clients can make
//! expensive: one token bucket (governor's GCRA) per address and
//! [`RouteClass`], in memory, bounded, and cleaned in the background.
//!
//! IPv4 addresses are counted one by one, IPv6 addresses by their `/64`
//! network (one host has a whole `/64` to pick addresses from). The
//! buckets run on the application's [`Clock`], so tests move time forward
//! rather than sleep.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::{Quota, RateLimiter};

use crate::clock::Clock;

/// Addresses remembered per route class (24 bytes each, a few MB with
/// the map's slack): past that, an
/// address the limiter does not know shares one bucket with every other
/// such address until the cleaning makes room.
pub const MAX_ADDRESSES: usize = 100_000;
/// How often buckets that are full again (indistinguishable from a new
/// one) are forgotten.
const CLEAN_PERIOD: Duration = Duration::from_secs(10);

/// The routes that share a limit, each with its own bucket per address.
/// Adding a class: a variant here, its setting in `config::ratelimit`, and
/// its marker in `web::ratelimit::class`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteClass {
    /// Starting a sign-in: `/login`, the gateway's `/oauth2/start`, a
    /// protected page sending an anonymous browser to the provider.
    Login,
    /// Completing one: `/callback`, `/oauth2/callback` (a code exchange
    /// with the provider).
    Callback,
    /// `/backchannel-logout`, `/oauth2/backchannel-logout` (a logout token
    /// to verify).
    BackchannelLogout,
    /// A bearer token to verify (`SKIP_JWT_BEARER_TOKENS`): its signature,
    /// or a call to the provider's introspection. A token already verified
    /// (in the cache) is not counted.
    Bearer,
}

impl RouteClass {
    /// Every class.
    pub const ALL: [RouteClass; 4] = [
        RouteClass::Login,
        RouteClass::Callback,
        RouteClass::BackchannelLogout,
        RouteClass::Bearer,
    ];

    /// Its name, as logged and as the `route` label of the metrics.
    pub fn name(self) -> &'static str {
        match self {
            RouteClass::Login => "login",
            RouteClass::Callback => "callback",
            RouteClass::BackchannelLogout => "backchannel_logout",
            RouteClass::Bearer => "bearer",
        }
    }

    /// Whether its clients are programs (the provider's servers, API
    /// clients), which are answered in JSON whatever they accept.
    pub fn machine(self) -> bool {
        matches!(self, RouteClass::BackchannelLogout | RouteClass::Bearer)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A limit: `burst` requests at once, and the bucket refilled over
/// `period` (one request every `period / burst` on average).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    burst: NonZeroU32,
    period: Duration,
}

impl Rate {
    /// The limit, unless `period` is too short to refill one request
    /// (less than a nanosecond per request).
    pub fn new(burst: NonZeroU32, period: Duration) -> Option<Self> {
        (period.as_nanos() >= u128::from(burst.get())).then_some(Self { burst, period })
    }

    /// Requests at once.
    pub fn burst(self) -> NonZeroU32 {
        self.burst
    }

    /// The time to refill the whole bucket.
    pub fn period(self) -> Duration {
        self.period
    }

    fn quota(self) -> Quota {
        Quota::with_period(self.period / self.burst.get())
            .expect("Rate::new refuses a zero refill interval")
            .allow_burst(self.burst)
    }
}

/// The buckets of every route class; a class without a [`Rate`] is not
/// limited. Cheap to clone.
#[derive(Clone)]
pub struct RateLimits(Arc<[Option<Limiter>; 4]>);

type Limiter = RateLimiter<Key, Bounded, LimiterClock, NoOpMiddleware<Duration>>;

impl RateLimits {
    /// Buckets for the classes `rate` gives a limit, on `clock`.
    pub fn new(rate: impl Fn(RouteClass) -> Option<Rate>, clock: &Clock) -> Self {
        let clock = LimiterClock {
            start: Instant::now(),
            clock: clock.clone(),
        };
        let limiter = |class| rate(class).map(|r: Rate| RateLimiter::new(r.quota(), Bounded::default(), clock.clone()));
        Self(Arc::new(RouteClass::ALL.map(limiter)))
    }

    /// Whether `class` is limited at all.
    pub fn limits(&self, class: RouteClass) -> bool {
        self.0[class.index()].is_some()
    }

    /// Takes one request of `client` from its bucket of `class`; when the
    /// bucket is empty, how long until the next request is let through.
    pub fn check(&self, class: RouteClass, client: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.0[class.index()] else {
            return Ok(());
        };
        limiter
            .check_key(&Key::of(client))
            .map_err(|not_until| not_until.wait_time_from(governor::clock::Clock::now(limiter.clock())))
    }

    /// Addresses remembered for `class`.
    pub fn addresses(&self, class: RouteClass) -> usize {
        self.0[class.index()].as_ref().map_or(0, |l| l.len())
    }

    /// Forgets the buckets that are full again.
    pub fn clean(&self) {
        for limiter in self.0.iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Cleans every 10 s, for ever (a background task).
    pub async fn clean_forever(self) {
        if self.0.iter().all(Option::is_none) {
            return;
        }
        let mut every = tokio::time::interval(CLEAN_PERIOD);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.clean();
        }
    }
}

/// Whose bucket a request takes from: an IPv4 address, an IPv6 `/64`, or
/// the bucket shared by addresses that found the store full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    V4(u32),
    V6Network(u64),
    Overflow,
}

impl Key {
    fn of(client: IpAddr) -> Self {
        // An IPv4 client of a dual-stack listener arrives as `::ffff:a.b.c.d`.
        match client.to_canonical() {
            IpAddr::V4(v4) => Key::V4(v4.to_bits()),
            IpAddr::V6(v6) => Key::V6Network((v6.to_bits() >> 64) as u64),
        }
    }
}

/// governor's `DashMap` store with at most [`MAX_ADDRESSES`] keys (and the
/// overflow bucket).
#[derive(Default)]
struct Bounded(DashMapStateStore<Key>);

impl StateStore for Bounded {
    type Key = Key;

    fn measure_and_replace<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let key = if !self.0.contains_key(key) && self.0.len() >= MAX_ADDRESSES {
            &Key::Overflow
        } else {
            key
        };
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<Key> for Bounded {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A monotonic clock that moves forward with the application's [`Clock`]
/// when a test advances it.
#[derive(Clone, Debug)]
struct LimiterClock {
    start: Instant,
    clock: Clock,
}

impl governor::clock::Clock for LimiterClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed() + self.clock.offset()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn limits(burst: u32, period: Duration, clock: &Clock) -> RateLimits {
        let rate = Rate::new(NonZeroU32::new(burst).unwrap(), period).unwrap();
        RateLimits::new(|class| (class == RouteClass::Login).then_some(rate), clock)
    }

    #[test]
    fn a_bucket_empties_refills_and_belongs_to_one_address_and_class() {
        let clock = Clock::system();
        let limits = limits(3, Duration::from_secs(60), &clock);
        let ada: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limits.check(RouteClass::Login, ada), Ok(()));
        }
        let wait = limits.check(RouteClass::Login, ada).unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Someone else, and another class, are not affected.
        assert_eq!(limits.check(RouteClass::Login, "192.0.2.2".parse().unwrap()), Ok(()));
        assert_eq!(limits.check(RouteClass::Callback, ada), Ok(()));
        assert!(!limits.limits(RouteClass::Callback));
        // A refill interval later, one more request.
        clock.advance(Duration::from_secs(20));
        assert_eq!(limits.check(RouteClass::Login, ada), Ok(()));
        assert!(limits.check(RouteClass::Login, ada).is_err());
    }

    #[test]
    fn ipv6_counts_by_network_and_mapped_ipv4_as_ipv4() {
        let v6 = |s: &str| IpAddr::V6(s.parse::<Ipv6Addr>().unwrap());
        assert_eq!(Key::of(v6("2001:db8:1:2::1")), Key::of(v6("2001:db8:1:2:ffff::9")));
        assert_ne!(Key::of(v6("2001:db8:1:2::1")), Key::of(v6("2001:db8:1:3::1")));
        let mapped = v6("::ffff:192.0.2.1");
        assert_eq!(Key::of(mapped), Key::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
        assert_ne!(Key::of(mapped), Key::of(v6("::ffff:192.0.2.2")));
    }

    #[test]
    fn the_store_is_bounded_and_cleaned() {
        let clock = Clock::system();
        let limits = limits(2, Duration::from_secs(60), &clock);
        let client = |i: usize| IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 + i as u32));
        for i in 0..MAX_ADDRESSES {
            limits.check(RouteClass::Login, client(i)).unwrap();
        }
        assert_eq!(limits.addresses(RouteClass::Login), MAX_ADDRESSES);
        // New addresses share one bucket once the store is full…
        let newcomer = client(MAX_ADDRESSES);
        let other = client(MAX_ADDRESSES + 1);
        limits.check(RouteClass::Login, newcomer).unwrap();
        limits.check(RouteClass::Login, other).unwrap();
        assert!(limits.check(RouteClass::Login, newcomer).is_err());
        assert_eq!(limits.addresses(RouteClass::Login), MAX_ADDRESSES + 1);
        // …known ones keep theirs…
        limits.check(RouteClass::Login, client(0)).unwrap();
        assert!(limits.check(RouteClass::Login, client(0)).is_err());
        // …and once their buckets are full again (governor waits one refill
        // interval more), cleaning forgets them all.
        limits.clean();
        assert_eq!(limits.addresses(RouteClass::Login), MAX_ADDRESSES + 1);
        clock.advance(Duration::from_secs(120));
        limits.clean();
        assert_eq!(limits.addresses(RouteClass::Login), 0);
        limits.check(RouteClass::Login, newcomer).unwrap();
        limits.check(RouteClass::Login, newcomer).unwrap();
    }

    #[test]
    fn a_period_too_short_for_its_burst_is_refused() {
        let burst = NonZeroU32::new(1000).unwrap();
        assert!(Rate::new(burst, Duration::from_nanos(999)).is_none());
        assert!(Rate::new(burst, Duration::from_nanos(1000)).is_some());
    }
}
