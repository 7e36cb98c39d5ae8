//! The one error type every backend returns.

use std::fmt;

/// A boxed error usable as a source or as a body error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of every cache operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The backend cannot be reached right now (connection refused, server down).
    /// Temporary: retrying later may succeed.
    Unavailable,
    /// The operation did not complete within its timeout. Temporary.
    Timeout,
    /// Stored bytes could not be decoded. Backends turn this into a miss on `get`;
    /// it reaches callers only from lower-level APIs such as the codec.
    CorruptEntry,
    /// A local I/O operation failed.
    Io,
    /// The backend was configured wrongly (bad URL, bad path, zero capacity).
    Config,
    /// The backend does not support this operation; see [`Capabilities`](crate::Capabilities).
    Unsupported,
    /// The entry is larger than the backend accepts.
    TooLarge,
    /// The key is not acceptable (longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN)).
    InvalidKey,
    /// The argument is not acceptable (a malformed pattern, an invalid header).
    InvalidInput,
    /// A streamed body failed or did not match its declared length.
    Body,
    /// Anything else the backend reports.
    Backend,
}

impl ErrorKind {
    /// Whether retrying the same operation later may succeed.
    pub fn is_temporary(self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout)
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Unavailable => "backend unavailable",
            Self::Timeout => "operation timed out",
            Self::CorruptEntry => "corrupt entry",
            Self::Io => "i/o error",
            Self::Config => "configuration error",
            Self::Unsupported => "unsupported operation",
            Self::TooLarge => "entry too large",
            Self::InvalidKey => "invalid key",
            Self::InvalidInput => "invalid input",
            Self::Body => "body error",
            Self::Backend => "backend error",
        }
    }
}

/// An error from a cache backend: its kind, the backend's name, the key it concerns,
/// a message and the underlying cause.
///
/// Messages never contain credentials: backends redact passwords before they build an
/// error, and keys longer than 200 bytes are shortened.
pub struct Error {
    kind: ErrorKind,
    backend: &'static str,
    key: Option<String>,
    message: String,
    source: Option<BoxError>,
}

const MAX_KEY_IN_MESSAGE: usize = 200;

impl Error {
    /// Creates an error of `kind` raised by `backend` with a lower-case message.
    pub fn new(kind: ErrorKind, backend: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            backend,
            key: None,
            message: message.into(),
            source: None,
        }
    }

    /// The error every optional operation returns by default.
    pub fn unsupported(backend: &'static str, operation: &str) -> Self {
        Self::new(
            ErrorKind::Unsupported,
            backend,
            format!("{operation} is not supported by this backend"),
        )
    }

    /// Names the key the error concerns (shortened to 200 bytes).
    #[must_use]
    pub fn with_key(mut self, key: &str) -> Self {
        let mut end = key.len().min(MAX_KEY_IN_MESSAGE);
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        let mut shown = key[..end].to_owned();
        if end < key.len() {
            shown.push_str("...");
        }
        self.key = Some(shown);
        self
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying later may succeed (unavailable, timeout).
    pub fn is_temporary(&self) -> bool {
        self.kind.is_temporary()
    }

    /// The name of the backend that raised the error, such as `"memory"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The key the error concerns, if any (possibly shortened).
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The message, without backend, key or cause.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} backend: {}: {}",
            self.backend,
            self.kind.describe(),
            self.message
        )?;
        if let Some(key) = &self.key {
            write!(f, " (key {key:?})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("backend", &self.backend)
            .field("key", &self.key)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|source| source.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_backend_kind_and_key() {
        let error = Error::new(ErrorKind::Timeout, "redis", "get took longer than 250ms")
            .with_key("GET:https://example.com/");
        assert_eq!(
            error.to_string(),
            "redis backend: operation timed out: get took longer than 250ms (key \"GET:https://example.com/\")"
        );
        assert!(error.is_temporary());
    }

    #[test]
    fn long_keys_are_shortened_on_a_char_boundary() {
        let key = "é".repeat(150);
        let error = Error::new(ErrorKind::Io, "disk", "write failed").with_key(&key);
        let shown = error.key().unwrap();
        assert_eq!(shown, format!("{}...", "é".repeat(100)));
    }

    #[test]
    fn source_chain_is_kept() {
        let io = std::io::Error::other("disk full");
        let error = Error::new(ErrorKind::Io, "disk", "write failed").with_source(io);
        let source = std::error::Error::source(&error).unwrap();
        assert_eq!(source.to_string(), "disk full");
        assert!(!error.is_temporary());
    }
}
