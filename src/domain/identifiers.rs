//! Session and customer identifiers. Both become Azure Table keys, so they obey the
//! key rules: no `/`, `\`, `#`, `?` and no control characters.

use std::fmt;

const MAX_CHARS: usize = 256;

/// Why an identifier was refused; the message names the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidIdentifier(pub String);

fn parse_key(field: &str, raw: &str) -> Result<String, InvalidIdentifier> {
    let chars = raw.chars().count();
    if chars == 0 {
        return Err(InvalidIdentifier(format!("{field} must not be empty")));
    }
    if chars > MAX_CHARS {
        return Err(InvalidIdentifier(format!(
            "{field} must be at most {MAX_CHARS} characters (got {chars})"
        )));
    }
    if let Some(bad) = raw.chars().find(|c| matches!(c, '/' | '\\' | '#' | '?')) {
        return Err(InvalidIdentifier(format!(
            "{field} must not contain '{bad}'"
        )));
    }
    if let Some(bad) = raw.chars().find(|c| c.is_control()) {
        return Err(InvalidIdentifier(format!(
            "{field} must not contain control characters (found U+{:04X})",
            bad as u32
        )));
    }
    Ok(raw.to_owned())
}

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, InvalidIdentifier> {
                parse_key($field, raw).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

key_type!(
    /// Names one conversation; the Table Storage PartitionKey of its turns.
    SessionId,
    "session_id"
);
key_type!(
    /// Who owns a conversation (for listing and access checks).
    CustomerId,
    "customer_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_quotes_spaces_and_non_ascii() {
        for ok in ["user123", "o'brien", "a b", "Zoë-会话", &"x".repeat(256)] {
            assert_eq!(SessionId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(SessionId::parse(&"é".repeat(256)).is_ok());
        assert!(SessionId::parse(&"é".repeat(257)).is_err());
    }

    #[test]
    fn rejects_key_breaking_characters() {
        for bad in [
            "", "a/b", "a\\b", "a#b", "a?b", "a\u{0}b", "a\nb", "a\u{7f}", "a\u{85}b",
        ] {
            let err = SessionId::parse(bad).unwrap_err();
            assert!(err.0.starts_with("session_id must"), "{bad:?}: {}", err.0);
        }
        let err = CustomerId::parse("a/b").unwrap_err();
        assert_eq!(err.0, "customer_id must not contain '/'");
    }
}
