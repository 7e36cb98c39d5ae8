//! Keys and key patterns.

use crate::error::{Error, ErrorKind, Result};

/// The longest key, in bytes, that every backend accepts: 8 KiB.
///
/// Keys are arbitrary strings up to this length: any Unicode, `/`, `..`, NUL. Backends
/// that map keys to file names hash them; backends with a key namespace prefix them.
pub const MAX_KEY_LEN: usize = 8 * 1024;

/// Checks that `key` is acceptable to every backend (at most [`MAX_KEY_LEN`] bytes).
pub fn validate_key(backend: &'static str, key: &str) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            backend,
            format!(
                "key is {} bytes long, the limit is {MAX_KEY_LEN}",
                key.len()
            ),
        )
        .with_key(key));
    }
    Ok(())
}

/// A glob pattern over keys, for [`delete_pattern`](crate::CacheManager::delete_pattern).
///
/// `*` matches any run of characters (including none), `?` matches exactly one character,
/// and `\` makes the next character literal (`\*` matches a star). Every other character
/// matches itself. The pattern is matched against the whole key.
///
/// ```
/// use cache_core::KeyPattern;
///
/// let pattern = KeyPattern::new("GET:https://example.com/users/*").unwrap();
/// assert!(pattern.matches("GET:https://example.com/users/42"));
/// assert!(!pattern.matches("GET:https://example.com/orders/42"));
/// assert_eq!(pattern.literal_prefix(), "GET:https://example.com/users/");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPattern {
    source: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
}

impl KeyPattern {
    /// Parses a pattern. Fails when it is longer than [`MAX_KEY_LEN`] or ends in a lone `\`.
    pub fn new(pattern: &str) -> Result<Self> {
        if pattern.len() > MAX_KEY_LEN {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "core",
                format!(
                    "pattern is {} bytes long, the limit is {MAX_KEY_LEN}",
                    pattern.len()
                ),
            ));
        }
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => Token::AnyRun,
                '?' => Token::AnyOne,
                '\\' => match chars.next() {
                    Some(escaped) => Token::Literal(escaped),
                    None => {
                        return Err(Error::new(
                            ErrorKind::InvalidInput,
                            "core",
                            "pattern ends with an unfinished escape `\\`",
                        ));
                    }
                },
                other => Token::Literal(other),
            };
            // Consecutive stars match the same keys as one star.
            if token == Token::AnyRun && tokens.last() == Some(&Token::AnyRun) {
                continue;
            }
            tokens.push(token);
        }
        Ok(Self {
            source: pattern.to_owned(),
            tokens,
        })
    }

    /// The pattern as it was written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal characters before the first wildcard: every matching key starts with it.
    pub fn literal_prefix(&self) -> String {
        self.tokens
            .iter()
            .map_while(|token| match token {
                Token::Literal(c) => Some(*c),
                Token::AnyOne | Token::AnyRun => None,
            })
            .collect()
    }

    /// Whether the whole `key` matches the pattern.
    pub fn matches(&self, key: &str) -> bool {
        let key: Vec<char> = key.chars().collect();
        let tokens = &self.tokens;
        let (mut k, mut t) = (0usize, 0usize);
        // Where to resume after the last star: the token after it and the key position
        // it has consumed up to.
        let mut backtrack: Option<(usize, usize)> = None;
        while k < key.len() {
            match tokens.get(t) {
                Some(Token::AnyRun) => {
                    backtrack = Some((t + 1, k));
                    t += 1;
                }
                Some(Token::AnyOne) => {
                    k += 1;
                    t += 1;
                }
                Some(Token::Literal(c)) if *c == key[k] => {
                    k += 1;
                    t += 1;
                }
                _ => match backtrack {
                    Some((after_star, consumed)) => {
                        backtrack = Some((after_star, consumed + 1));
                        t = after_star;
                        k = consumed + 1;
                    }
                    None => return false,
                },
            }
        }
        tokens[t..].iter().all(|token| *token == Token::AnyRun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_keys() {
        let cases = [
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ba", false),
            ("*c", "abc", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a*b*c", "a-b-b-c", true),
            ("a*b*c", "a-b-b-", false),
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("ключ*", "ключ🔑", true),
            ("?", "🔑", true),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("a\\?", "a?", true),
            ("**x", "yyx", true),
        ];
        for (pattern, key, expected) in cases {
            let parsed = KeyPattern::new(pattern).unwrap();
            assert_eq!(parsed.matches(key), expected, "{pattern:?} against {key:?}");
        }
    }

    #[test]
    fn literal_prefix_stops_at_the_first_wildcard() {
        assert_eq!(
            KeyPattern::new("ab\\*c?d*").unwrap().literal_prefix(),
            "ab*c"
        );
        assert_eq!(KeyPattern::new("*x").unwrap().literal_prefix(), "");
    }

    #[test]
    fn bad_patterns_and_keys_are_rejected() {
        assert_eq!(
            KeyPattern::new("abc\\").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(
            validate_key("memory", &long).unwrap_err().kind(),
            ErrorKind::InvalidKey
        );
        validate_key("memory", &long[1..]).unwrap();
    }
}
