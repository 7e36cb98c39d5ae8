//! How redis-rs errors map into the core error kinds.

use std::time::Duration;

use cache_core::{Error, ErrorKind};
use redis::RedisError;

/// The backend's name in errors and statistics.
pub(crate) const NAME: &str = "redis";

/// `error`, met while trying to `what`, as a core error: refused, dropped and broken
/// connections and a server that cannot serve yet (loading, failing over) are
/// `Unavailable`, timeouts `Timeout` (both temporary, so callers degrade), refused
/// credentials `Config`, anything else `Backend`. redis-rs errors name the failing command or the I/O error,
/// never the URL, so they are kept as the source.
pub(crate) fn redis_error(error: RedisError, what: &str) -> Error {
    use redis::{ErrorKind as Redis, ServerErrorKind as Server};
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else {
        match error.kind() {
            // A wrong password or a bad setting does not heal by waiting.
            Redis::AuthenticationFailed
            | Redis::InvalidClientConfig
            | Redis::Server(Server::NoPerm) => ErrorKind::Config,
            // The server is there but cannot serve now: loading its data, failing over.
            Redis::Server(
                Server::BusyLoading
                | Server::MasterDown
                | Server::ReadOnly
                | Server::TryAgain
                | Server::ClusterDown,
            ) => ErrorKind::Unavailable,
            Redis::Io => ErrorKind::Unavailable,
            _ if error.is_connection_refusal() || error.is_connection_dropped() => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Backend,
        }
    };
    let message = match kind {
        ErrorKind::Unavailable => {
            format!("cannot {what}: the server is unreachable or not serving")
        }
        ErrorKind::Timeout => format!("cannot {what}: the server did not answer in time"),
        ErrorKind::Config => {
            format!("cannot {what}: the server refused the credentials or settings")
        }
        _ => format!("cannot {what}"),
    };
    Error::new(kind, NAME, message).with_source(error)
}

/// The error of an operation that ran past its timeout.
pub(crate) fn timeout_error(what: &str, timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        NAME,
        format!("cannot {what}: no answer within {timeout:?}"),
    )
}
