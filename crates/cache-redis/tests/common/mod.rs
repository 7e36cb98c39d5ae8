//! Helpers the Redis test files share.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the helpers"
)]

use std::time::Duration;

use cache_core::testkit::RawStorage;
use cache_core::testkit::fixtures::unique_prefix;
use cache_core::{CacheFuture, Result};
use cache_redis::testing::RedisServer;
use cache_redis::{RedisCache, RedisConfig};

/// A server of this test's own, started fresh (isolation and fault injection).
pub(crate) fn own_server() -> RedisServer {
    RedisServer::start().expect("start a throwaway redis-server (is it on PATH?)")
}

/// The server named by `REDIS_URL` when it is set (xtask starts one per run), otherwise
/// one of this test's own; the second value keeps that one alive.
pub(crate) fn shared_or_own_server() -> (String, Option<RedisServer>) {
    match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let server = own_server();
            (server.url(), Some(server))
        }
    }
}

/// A namespace no other test uses, so tests can share one server.
pub(crate) fn unique_namespace(label: &str) -> String {
    unique_prefix(label).trim_end_matches(':').to_owned()
}

/// A config for `url` in a fresh namespace with short timeouts.
pub(crate) fn config(url: &str, label: &str) -> RedisConfig {
    RedisConfig::new(url)
        .with_namespace(unique_namespace(label))
        .with_command_timeout(Duration::from_millis(500))
        .with_connect_timeout(Duration::from_millis(500))
        .with_reconnect_max_delay(Duration::from_millis(200))
}

/// A plain redis-rs connection, beside the cache, to look at what it stored.
pub(crate) async fn plain_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Raw access to the cache's stored values through a plain client.
pub(crate) struct RawRedis {
    pub(crate) cache: RedisCache,
    pub(crate) connection: redis::aio::MultiplexedConnection,
}

impl RawStorage for RawRedis {
    fn read_raw<'a>(&'a self, key: &'a str) -> CacheFuture<'a, Result<Option<Vec<u8>>>> {
        CacheFuture::new(async move {
            let mut connection = self.connection.clone();
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(self.cache.entry_key(key))
                .query_async(&mut connection)
                .await
                .unwrap();
            Ok(value)
        })
    }

    fn write_raw<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> CacheFuture<'a, Result<()>> {
        CacheFuture::new(async move {
            let mut connection = self.connection.clone();
            let () = redis::cmd("SET")
                .arg(self.cache.entry_key(key))
                .arg(bytes)
                .arg("KEEPTTL")
                .query_async(&mut connection)
                .await
                .unwrap();
            Ok(())
        })
    }
}
