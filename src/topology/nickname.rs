//! Nicknames: free text a peer picks for itself (by default its host name), carried in every
//! handshake and peer record and written into logs and `weave status peers`. Unchecked, a 60 KB
//! nickname was accepted, a newline forged log lines and escape codes reached the terminal of
//! whoever ran `weave status`. So a nickname is 1 to 253 printable ASCII characters, no spaces:
//! what a host name or a Kubernetes Node name can be.

/// Longest nickname: the longest DNS name (RFC 1035, without the trailing dot), which bounds
/// both host names and Kubernetes Node names.
pub const MAX_NICKNAME_BYTES: usize = 253;
/// Characters of a refused nickname shown in the error: enough to recognise it.
const SHOWN_CHARS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NicknameError {
    #[error("invalid nickname: empty")]
    Empty,
    #[error("invalid nickname {shown}: {len} bytes, more than {MAX_NICKNAME_BYTES}")]
    TooLong { shown: String, len: usize },
    #[error(
        "invalid nickname {shown}: {found:?} at byte {at}; only printable ASCII without spaces \
         is allowed"
    )]
    BadCharacter {
        shown: String,
        found: char,
        at: usize,
    },
}

pub fn check_nickname(nickname: &str) -> Result<(), NicknameError> {
    if nickname.is_empty() {
        return Err(NicknameError::Empty);
    }
    if nickname.len() > MAX_NICKNAME_BYTES {
        return Err(NicknameError::TooLong {
            shown: shown(nickname),
            len: nickname.len(),
        });
    }
    match nickname.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
        Some((at, found)) => Err(NicknameError::BadCharacter {
            shown: shown(nickname),
            found,
            at,
        }),
        None => Ok(()),
    }
}

/// The start of `text`, quoted and escaped, so that an error message is safe to log.
fn shown(text: &str) -> String {
    let start: String = text.chars().take(SHOWN_CHARS).collect();
    let ellipsis = if start.len() < text.len() { "..." } else { "" };
    format!("{start:?}{ellipsis}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn host_and_node_names_are_nicknames() {
        for ok in [
            "node-1",
            "ip-10-0-0-1.eu-west-1.compute.internal",
            "r113-1",
            "UPPER_case.9",
        ] {
            assert_eq!(check_nickname(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_nickname(&"a".repeat(MAX_NICKNAME_BYTES)), Ok(()));
    }

    #[test]
    fn oversized_empty_and_control_characters_are_refused_safely() {
        assert_eq!(check_nickname(""), Err(NicknameError::Empty));
        let huge = "x".repeat(60 * 1024);
        let err = check_nickname(&huge).unwrap_err();
        assert!(matches!(err, NicknameError::TooLong { len: 61440, .. }));
        assert!(err.to_string().len() < 200, "the error does not echo 60 KB");
        for bad in [
            "two\nlines",
            "esc\x1b[31mred",
            "with space",
            "nul\0",
            "caf\u{e9}",
            "\u{202e}rtl",
        ] {
            let err = check_nickname(bad).unwrap_err();
            let text = err.to_string();
            assert!(
                !text.chars().any(char::is_control),
                "the error is safe to log: {text:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn an_accepted_nickname_is_safe_to_print(nickname in ".{0,300}") {
            if check_nickname(&nickname).is_ok() {
                prop_assert!(nickname.len() <= MAX_NICKNAME_BYTES);
                prop_assert!(nickname.chars().all(|c| c.is_ascii_graphic()));
            }
        }
    }
}
