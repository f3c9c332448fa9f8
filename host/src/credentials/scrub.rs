//! Scrubbing: an upstream API that echoes a credential back (in an error message, a debug
//! field, a header) must not hand it to the connector, and through it to results, errors,
//! logs or the store. The host replaces every occurrence of the connection's secrets in a
//! response before the guest sees it.

use super::Secret;

/// What replaces a secret.
pub const REDACTED: &[u8] = b"[redacted]";

/// Secrets shorter than this are not searched for: they would match ordinary text, and a
/// credential that short protects nothing anyway.
const MIN_LEN: usize = 4;

/// The values to search for, longest first (so a secret containing another is replaced
/// whole).
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    needles: Vec<Secret>,
}

impl Scrubber {
    pub fn new(values: impl IntoIterator<Item = Secret>) -> Self {
        let mut needles: Vec<Secret> = values
            .into_iter()
            .filter(|s| s.expose().len() >= MIN_LEN)
            .collect();
        needles.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        needles.dedup();
        Self { needles }
    }

    /// The values searched for.
    pub fn needles(&self) -> &[Secret] {
        &self.needles
    }

    /// Whether `value` is among the values searched for.
    pub fn contains(&self, value: &Secret) -> bool {
        self.needles.contains(value)
    }

    /// `bytes` with every secret replaced, or `None` when none occurs (no copy made).
    pub fn scrub(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut current: Option<Vec<u8>> = None;
        for needle in &self.needles {
            let finder = memchr::memmem::Finder::new(needle.expose().as_bytes());
            let haystack = current.as_deref().unwrap_or(bytes);
            let mut hits = finder.find_iter(haystack).peekable();
            if hits.peek().is_none() {
                continue;
            }
            let mut out = Vec::with_capacity(haystack.len());
            let mut last = 0;
            for at in hits {
                out.extend_from_slice(&haystack[last..at]);
                out.extend_from_slice(REDACTED);
                last = at + needle.expose().len();
            }
            out.extend_from_slice(&haystack[last..]);
            current = Some(out);
        }
        current
    }

    /// A string with every secret replaced.
    pub fn scrub_str(&self, text: String) -> String {
        match self.scrub(text.as_bytes()) {
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            None => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_of_every_secret_is_replaced() {
        let s = Scrubber::new([Secret::new("tok-123456"), Secret::new("tok-1234567890")]);
        let out = s
            .scrub(b"bad token tok-1234567890; also tok-123456, tok-123456")
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "bad token [redacted]; also [redacted], [redacted]"
        );
        assert_eq!(s.scrub(b"nothing here"), None);
    }

    #[test]
    fn very_short_values_are_left_alone() {
        let s = Scrubber::new([Secret::new("ab")]);
        assert_eq!(s.scrub(b"abab"), None);
    }
}
