//! Virtual keys: where a request carries one, how it is hashed, and what the filter knows of it.

use sha2::{Digest, Sha256};
use std::fmt;

/// The prefix of every Warden (and Bifrost) virtual key, matched case-insensitively.
pub const KEY_PREFIX: &str = "sk-bf-";

/// The request headers that may carry a virtual key, in Bifrost's order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `x-bf-vk`: the only header that also accepts keys without the `sk-bf-` prefix.
    BifrostHeader,
    /// `authorization: Bearer sk-bf-…`
    Authorization,
    /// `x-api-key` (Anthropic style)
    XApiKey,
    /// `x-goog-api-key` (Gemini style)
    GoogApiKey,
    /// `api-key` (Azure style)
    ApiKey,
}

impl KeySource {
    /// Every source, first match wins.
    pub const PRECEDENCE: [KeySource; 5] = [
        KeySource::BifrostHeader,
        KeySource::Authorization,
        KeySource::XApiKey,
        KeySource::GoogApiKey,
        KeySource::ApiKey,
    ];

    /// The lower-case header name.
    pub fn header(self) -> &'static str {
        match self {
            KeySource::BifrostHeader => "x-bf-vk",
            KeySource::Authorization => "authorization",
            KeySource::XApiKey => "x-api-key",
            KeySource::GoogApiKey => "x-goog-api-key",
            KeySource::ApiKey => "api-key",
        }
    }

    /// The key this header value carries, if it carries one.
    fn key_in(self, value: &[u8]) -> Option<&[u8]> {
        let value = value.trim_ascii();
        let candidate = match self {
            KeySource::BifrostHeader => return (!value.is_empty()).then_some(value),
            KeySource::Authorization => {
                let (scheme, token) = value.split_at_checked(7)?;
                if !scheme.eq_ignore_ascii_case(b"bearer ") {
                    return None;
                }
                token.trim_ascii()
            }
            _ => value,
        };
        has_key_prefix(candidate).then_some(candidate)
    }
}

fn has_key_prefix(value: &[u8]) -> bool {
    value.len() > KEY_PREFIX.len() && value[..KEY_PREFIX.len()].eq_ignore_ascii_case(KEY_PREFIX.as_bytes())
}

/// A key found in a request, not yet looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey {
    /// Which header carried it (the filter removes that header before going upstream).
    pub source: KeySource,
    /// The lookup hash of the key.
    pub hash: KeyHash,
}

/// Finds the virtual key of a request.
///
/// `headers` are `(lower-case name, raw value)` pairs as the proxy hands them over; values need
/// not be UTF-8. The first header in [`KeySource::PRECEDENCE`] that carries a key wins; an
/// `authorization` or `x-api-key` that carries something else (a provider key, Basic auth) is
/// not a virtual key and the search goes on.
pub fn find_key<'h, I>(headers: I) -> Option<PresentedKey>
where
    I: IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
{
    KeySource::PRECEDENCE.into_iter().find_map(|source| {
        headers
            .clone()
            .into_iter()
            .filter(|(name, _)| *name == source.header())
            .find_map(|(_, value)| source.key_in(value))
            .map(|key| PresentedKey { source, hash: KeyHash::of(key) })
    })
}

/// The virtual key `source` carries in `headers`: agent mode sends its steps back through the
/// gateway as the caller, with the caller's key.
pub fn presented_secret<'h, I>(headers: I, source: KeySource) -> Option<&'h [u8]>
where
    I: IntoIterator<Item = (&'h str, &'h [u8])>,
{
    headers.into_iter().filter(|(name, _)| *name == source.header()).find_map(|(_, value)| source.key_in(value))
}

/// Every header that carries a virtual key, whichever won: none of them may reach the provider.
pub fn key_headers<'h, I>(headers: I) -> impl Iterator<Item = &'static str>
where
    I: IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
{
    KeySource::PRECEDENCE.into_iter().filter_map(move |source| {
        let carries =
            headers.clone().into_iter().any(|(name, value)| name == source.header() && source.key_in(value).is_some());
        carries.then_some(source.header())
    })
}

/// The SHA-256 of a virtual key: what the store keeps and what the filter looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Hashes a key. The `sk-bf-` prefix is compared case-insensitively, so it is lower-cased
    /// first; the rest of the key is hashed as sent.
    pub fn of(key: &[u8]) -> KeyHash {
        let mut hasher = Sha256::new();
        if has_key_prefix(key) {
            hasher.update(KEY_PREFIX.as_bytes());
            hasher.update(&key[KEY_PREFIX.len()..]);
        } else {
            hasher.update(key);
        }
        KeyHash(hasher.finalize().into())
    }

    /// Parses the 64-character lower-case hex form.
    pub fn from_hex(hex: &str) -> Option<KeyHash> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(KeyHash(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl KeyHash {
    /// The 64-character lower-case hex form: the name of the key's policy record. On the request
    /// path, so it avoids the formatting machinery.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        // Into a fixed buffer, then one check: pushing 64 chars encodes each as UTF-8 and grows
        // a string, on every request.
        let mut out = [0u8; 64];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
        std::str::from_utf8(&out).map(str::to_owned).unwrap_or_default()
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
