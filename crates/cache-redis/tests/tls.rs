//! `rediss://` against a real TLS-only redis-server with a private CA (feature `tls`).
#![cfg(feature = "tls")]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use cache_core::testkit::fixtures::{policy, response};
use cache_core::{CacheManager, ErrorKind, PutOptions};
use cache_redis::testing::{RedisServer, redis_tests_skipped};
use cache_redis::{RedisCache, RedisConfig};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl (is it on PATH?)");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=cache-redis test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_urls_connect_over_tls_to_a_trusted_server_only() {
    if redis_tests_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let server = RedisServer::start_tls(
        &dir.path().join("server.crt"),
        &dir.path().join("server.key"),
        &dir.path().join("ca.crt"),
    )
    .unwrap();
    assert!(server.url().starts_with("rediss://127.0.0.1:"));
    let timeouts = |config: RedisConfig| {
        config
            .with_namespace("tls")
            .with_connect_timeout(Duration::from_secs(2))
            .with_command_timeout(Duration::from_secs(2))
    };

    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let cache = RedisCache::connect(timeouts(
        RedisConfig::new(server.url()).with_tls_root_certificate(ca),
    ))
    .await
    .unwrap();
    let stored = response("https://example.com/tls", Bytes::from_static(b"over tls"));
    let policy = policy(&stored);
    cache
        .put("k", stored, policy, PutOptions::new())
        .await
        .unwrap();
    let hit = cache.get("k").await.unwrap().unwrap();
    assert_eq!(hit.response.body, Bytes::from_static(b"over tls"));

    // The system's roots do not include the private CA: the handshake is refused.
    let untrusted = RedisCache::connect(timeouts(RedisConfig::new(server.url())))
        .await
        .unwrap_err();
    assert_eq!(untrusted.kind(), ErrorKind::Unavailable, "{untrusted}");
    let source = format!("{:?}", std::error::Error::source(&untrusted));
    assert!(source.to_lowercase().contains("certificate"), "{source}");
    // Plain text to the TLS port gets nowhere either.
    let plain = server.url().replacen("rediss://", "redis://", 1);
    let refused = RedisCache::connect(timeouts(RedisConfig::new(plain)))
        .await
        .unwrap_err();
    assert!(refused.is_temporary(), "{refused}");
}
