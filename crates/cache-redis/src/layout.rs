//! Where the cache keeps what in Redis: the keys of entries, tag sets, streams and the bus,
//! and the globs that select them.
//!
//! Every key of a namespace starts with the namespace's encoded form and a `:`. The
//! encoding replaces `%` with `%25` and `:` with `%3A` and keeps every other byte, so an
//! encoded namespace holds no `:` and its first `:` ends it: no namespace's prefix begins
//! another's (`ns:` is not a prefix of `ns%3Ae:`), however the names and keys look. A
//! namespace without `%` and `:` (`shop`, `http-cache`) is written as it is.

use cache_core::KeyPattern;

/// The Redis keys of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct KeyLayout {
    /// `{encoded namespace}:`, in front of every key of the namespace.
    prefix: String,
    /// `{encoded namespace}:e:`, in front of every entry's key.
    entry_prefix: String,
    /// `{encoded namespace}:t:`, in front of every tag set's key.
    tag_prefix: String,
}

impl KeyLayout {
    pub(crate) fn new(namespace: &str) -> Self {
        let prefix = format!("{}:", encode_namespace(namespace));
        Self {
            entry_prefix: format!("{prefix}e:"),
            tag_prefix: format!("{prefix}t:"),
            prefix,
        }
    }

    /// The prefix of every key of the namespace.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The prefix of every entry key (the tag scripts put keys behind it).
    pub(crate) fn entry_prefix(&self) -> &str {
        &self.entry_prefix
    }

    /// The key of the entry for `key`.
    pub(crate) fn entry(&self, key: &str) -> String {
        format!("{}{key}", self.entry_prefix)
    }

    /// The key of the set of entries put with `tag`.
    pub(crate) fn tag(&self, tag: &str) -> String {
        format!("{}{tag}", self.tag_prefix)
    }

    /// The key of the stream `name`.
    pub(crate) fn stream(&self, name: &str) -> String {
        format!("{}s:{name}", self.prefix)
    }

    /// The Pub/Sub channel of the invalidation bus.
    pub(crate) fn bus_channel(&self) -> String {
        format!("{}bus", self.prefix)
    }

    /// The stream that keeps the bus's recent events for replay.
    pub(crate) fn bus_stream(&self) -> String {
        format!("{}bus:log", self.prefix)
    }

    /// The cache key of an entry key of this namespace, or `None` for any other key.
    pub(crate) fn key_of_entry<'a>(&self, redis_key: &'a [u8]) -> Option<&'a str> {
        redis_key
            .strip_prefix(self.entry_prefix.as_bytes())
            .and_then(|key| std::str::from_utf8(key).ok())
    }

    /// A glob for every entry key of the namespace.
    pub(crate) fn every_entry(&self) -> String {
        format!("{}*", escape_glob(&self.entry_prefix))
    }

    /// A glob for every tag set of the namespace.
    pub(crate) fn every_tag(&self) -> String {
        format!("{}*", escape_glob(&self.tag_prefix))
    }

    /// A glob for at least the entry keys whose cache keys match `pattern`.
    pub(crate) fn entries_matching(&self, pattern: &KeyPattern) -> String {
        format!(
            "{}{}",
            escape_glob(&self.entry_prefix),
            redis_glob(pattern.as_str())
        )
    }
}

/// `namespace` with `%` written `%25` and `:` written `%3A`: an encoded namespace holds
/// no `:`, and different namespaces encode differently.
fn encode_namespace(namespace: &str) -> String {
    let mut encoded = String::with_capacity(namespace.len());
    for c in namespace.chars() {
        match c {
            '%' => encoded.push_str("%25"),
            ':' => encoded.push_str("%3A"),
            other => encoded.push(other),
        }
    }
    encoded
}

/// `text` with Redis's glob characters escaped, so it matches only itself.
pub(crate) fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// A [`KeyPattern`] source as a Redis glob matching at least the same keys: literals are
/// escaped, `*` stays, and `?` (one character, which may be several bytes) becomes `*`.
fn redis_glob(pattern: &str) -> String {
    let mut glob = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' => glob.push('*'),
            '\\' => {
                if let Some(escaped) = chars.next() {
                    glob.push_str(&escape_glob(&escaped.to_string()));
                }
            }
            other => glob.push_str(&escape_glob(&other.to_string())),
        }
    }
    glob
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_encode_without_colons_and_only_where_needed() {
        assert_eq!(encode_namespace("http-cache"), "http-cache");
        assert_eq!(encode_namespace("ns:e"), "ns%3Ae");
        assert_eq!(encode_namespace("ns%3Ae"), "ns%253Ae");
        assert_eq!(encode_namespace("a:%:"), "a%3A%25%3A");
        assert_eq!(encode_namespace(""), "");
        assert_eq!(KeyLayout::new("ns").entry("k"), "ns:e:k");
        assert_eq!(KeyLayout::new("ns:e").entry("k"), "ns%3Ae:e:k");
        assert_eq!(KeyLayout::new("ns").every_entry(), "ns:e:*");
    }

    #[test]
    fn globs_escape_literals_and_widen_one_character_wildcards() {
        assert_eq!(escape_glob("ns[1]*?\\"), "ns\\[1\\]\\*\\?\\\\");
        assert_eq!(redis_glob("GET:/users/*"), "GET:/users/*");
        assert_eq!(redis_glob("a?c"), "a*c");
        assert_eq!(redis_glob("lit\\*eral[x]"), "lit\\*eral\\[x\\]");
    }
}
