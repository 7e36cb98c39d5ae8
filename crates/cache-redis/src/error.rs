//! How redis-rs errors map into the core error kinds.

use std::time::Duration;

use cache_core::{Error, ErrorKind};
use redis::RedisError;

/// The backend's name in errors and statistics.
pub(crate) const NAME: &str = "redis";

/// `error`, met while trying to `what`, as a core error: refused, dropped and broken
/// connections are `Unavailable`, timeouts `Timeout` (both temporary, so callers degrade),
/// anything else `Backend`. redis-rs errors name the failing command or the I/O error,
/// never the URL, so they are kept as the source.
pub(crate) fn redis_error(error: RedisError, what: &str) -> Error {
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else if error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
    {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Backend
    };
    let message = match kind {
        ErrorKind::Unavailable => format!("cannot {what}: the server is unreachable"),
        ErrorKind::Timeout => format!("cannot {what}: the server did not answer in time"),
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
