//! The id of a shared snapshot: the capability that opens it, so unguessable.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Random bytes in a share id: 128 bits from the operating system's CSPRNG.
const RANDOM_BYTES: usize = 16;
/// Their base64url length, unpadded.
const ID_CHARS: usize = 22;

/// A share id: 22 base64url characters ([`RANDOM_BYTES`] random bytes), so it is
/// URL-safe, a valid Table key, and cannot be guessed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareId(String);

impl ShareId {
    /// A fresh id; `None` only if the operating system cannot give randomness.
    pub fn generate() -> Option<Self> {
        let mut bytes = [0u8; RANDOM_BYTES];
        getrandom::fill(&mut bytes).ok()?;
        Some(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The id `raw` spells, if it is one [`ShareId::generate`] could have made.
    pub fn parse(raw: &str) -> Option<Self> {
        let decoded = URL_SAFE_NO_PAD.decode(raw).ok()?;
        (raw.len() == ID_CHARS && decoded.len() == RANDOM_BYTES).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_url_safe_distinct_and_parse_back() {
        let ids: std::collections::BTreeSet<ShareId> =
            (0..1000).map(|_| ShareId::generate().unwrap()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.as_str().len(), ID_CHARS);
            assert!(id
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(ShareId::parse(id.as_str()).as_ref(), Some(id));
        }
    }

    #[test]
    fn anything_else_is_no_share_id() {
        let valid = ShareId::generate().unwrap();
        let long = format!("{valid}A");
        for raw in [
            "",
            "abc",
            &valid.as_str()[1..],
            &long,
            "AAAAAAAAAAAAAAAAAAAAA/",
            "AAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert_eq!(ShareId::parse(raw), None, "{raw:?}");
        }
    }
}
