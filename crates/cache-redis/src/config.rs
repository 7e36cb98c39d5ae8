//! Configuration of the Redis backend, its bus and its streams.

use std::fmt;
use std::time::Duration;

use cache_core::TtlPolicy;

/// The URL [`RedisConfig::from_env`] uses when `REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// How to reach Redis and how to lay the cache out in it.
///
/// ```
/// use std::time::Duration;
/// use cache_redis::RedisConfig;
///
/// let config = RedisConfig::new("redis://:s3cret@127.0.0.1:6379/0")
///     .with_namespace("shop")
///     .with_command_timeout(Duration::from_millis(250));
/// assert_eq!(config.namespace(), "shop");
/// // The password never shows up in debug output (nor in errors or logs).
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    pub(crate) url: String,
    pub(crate) namespace: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) ttl_policy: TtlPolicy,
    pub(crate) max_entry_bytes: u64,
    pub(crate) bus_stream_max_len: u64,
    pub(crate) bus_ping_interval: Duration,
    pub(crate) reconnect_max_delay: Duration,
    pub(crate) lazy_connect: bool,
    #[cfg(feature = "tls")]
    pub(crate) tls_root_certificate: Option<Vec<u8>>,
}

impl RedisConfig {
    /// A configuration for the server at `url` (`redis://[user:password@]host[:port][/db]`,
    /// or `rediss://` with the `tls` feature), with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            namespace: "http-cache".to_owned(),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(1),
            ttl_policy: TtlPolicy::default(),
            max_entry_bytes: 64 * 1024 * 1024,
            bus_stream_max_len: 10_000,
            bus_ping_interval: Duration::from_secs(5),
            reconnect_max_delay: Duration::from_secs(2),
            lazy_connect: false,
            #[cfg(feature = "tls")]
            tls_root_certificate: None,
        }
    }

    /// A configuration for the URL in `REDIS_URL`, or [`DEFAULT_URL`] when it is unset.
    pub fn from_env() -> Self {
        Self::new(std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned()))
    }

    /// The namespace every key this cache writes lives under. Keys start with the
    /// namespace encoded (`%` as `%25`, `:` as `%3A`, everything else as it is) and a `:`:
    /// `{ns}:e:{key}` for entries, `{ns}:t:{tag}` for tag sets, `{ns}:bus` and
    /// `{ns}:bus:log` for the invalidation bus, `{ns}:s:{name}` for streams. An encoded
    /// namespace has no `:`, so no namespace's keys begin with another's prefix: `shop`
    /// and `shop:eu` (`shop%3Aeu:...`) never see each other's entries, tags or events.
    /// Pattern deletion and `clear` never touch a key outside the namespace.
    /// [`RedisCache::key_prefix`](crate::RedisCache::key_prefix) tells the prefix.
    /// Default: `http-cache`.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long establishing a connection may take. Default: 2 s.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one operation may take, waiting for a connection included; past it the
    /// operation fails with [`ErrorKind::Timeout`](cache_core::ErrorKind::Timeout).
    /// Default: 1 s.
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How long entries live in Redis (`PX`) when a put does not say. Default:
    /// [`TtlPolicy::default()`].
    pub fn with_ttl_policy(mut self, ttl_policy: TtlPolicy) -> Self {
        self.ttl_policy = ttl_policy;
        self
    }

    /// The largest encoded entry a put accepts; larger ones fail with `TooLarge` and
    /// remove the entry the key held, so the key is left without one (a big value blocks
    /// the single-threaded server while it moves). Default: 64 MiB.
    pub fn with_max_entry_bytes(mut self, max_entry_bytes: u64) -> Self {
        self.max_entry_bytes = max_entry_bytes;
        self
    }

    /// About how many invalidation events the bus's stream keeps for subscribers that
    /// reconnect (`XADD ... MAXLEN ~`); one that missed more receives `Resync`.
    /// Default: 10,000.
    pub fn with_bus_stream_max_len(mut self, max_len: u64) -> Self {
        self.bus_stream_max_len = max_len;
        self
    }

    /// How often a bus subscriber pings its connection to notice that it died silently.
    /// Default: 5 s.
    pub fn with_bus_ping_interval(mut self, interval: Duration) -> Self {
        // A zero interval would busy-loop (and tokio refuses it).
        self.bus_ping_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The longest pause between two reconnection attempts of a bus subscriber (it starts
    /// at 50 ms and doubles); values under 10 ms are taken as 10 ms. Default: 2 s.
    pub fn with_reconnect_max_delay(mut self, delay: Duration) -> Self {
        // A zero delay would make a subscriber whose server is gone reconnect in a loop.
        self.reconnect_max_delay = delay.max(Duration::from_millis(10));
        self
    }

    /// Whether [`RedisCache::connect`](crate::RedisCache::connect) returns without
    /// waiting for the server: then it succeeds while Redis is down, and operations fail
    /// with [`ErrorKind::Unavailable`](cache_core::ErrorKind::Unavailable) until it is up
    /// (each one tries to connect). Default: `false` (`connect` sends a `PING` and fails
    /// when the server does not answer it).
    pub fn with_lazy_connect(mut self, lazy: bool) -> Self {
        self.lazy_connect = lazy;
        self
    }

    /// Trusts this PEM root certificate (a private CA) for `rediss://` instead of the
    /// system's roots. Default: the system's roots.
    #[cfg(feature = "tls")]
    pub fn with_tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificate = Some(pem.into());
        self
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The URL with any password replaced by `***`, fit for logs.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The per-operation timeout.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// The connection timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self::new(DEFAULT_URL)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("namespace", &self.namespace)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("ttl_policy", &self.ttl_policy)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("bus_stream_max_len", &self.bus_stream_max_len)
            .field("bus_ping_interval", &self.bus_ping_interval)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("lazy_connect", &self.lazy_connect)
            .finish()
    }
}

/// `url` with its password masked, in the user-info part and in the `pass` / `password`
/// query parameters (redis-rs reads those for `redis+unix:` URLs); a URL that does not
/// parse is not shown at all, since it might hold a secret in a place we cannot find.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            if parsed.query().is_some() {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(name, value)| {
                        let secret = matches!(name.as_ref(), "pass" | "password");
                        let value = if secret {
                            "***".into()
                        } else {
                            value.into_owned()
                        };
                        (name.into_owned(), value)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => "<a url that does not parse>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_the_rest_is_kept() {
        assert_eq!(
            redact_url("redis://user:hunter2@cache.internal:6380/3"),
            "redis://user:***@cache.internal:6380/3"
        );
        assert_eq!(
            redact_url("redis://:hunter2@127.0.0.1"),
            "redis://:***@127.0.0.1"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("not a url hunter2"),
            "<a url that does not parse>"
        );
    }

    #[test]
    fn a_zero_reconnect_delay_is_taken_as_ten_milliseconds_not_a_busy_loop() {
        let config = RedisConfig::default().with_reconnect_max_delay(Duration::ZERO);
        assert_eq!(config.reconnect_max_delay, Duration::from_millis(10));
        let config = RedisConfig::default().with_reconnect_max_delay(Duration::from_secs(1));
        assert_eq!(config.reconnect_max_delay, Duration::from_secs(1));
    }

    #[test]
    fn connecting_outside_a_runtime_is_an_error_not_a_panic() {
        let connect = crate::RedisCache::connect(RedisConfig::default().with_lazy_connect(true));
        let error = futures::executor::block_on(connect).unwrap_err();
        assert_eq!(error.kind(), cache_core::ErrorKind::Config);
    }

    #[test]
    fn debug_output_has_no_password() {
        let config = RedisConfig::new("redis://admin:hunter2@127.0.0.1:6379");
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("redis://admin:***@127.0.0.1:6379"),
            "{debug}"
        );
    }
}
