//! Idents: what an address is allocated to (a container id, `weave:expose`, ...), named by the
//! caller of the HTTP API, persisted, and shown by `weave status ipam` and in logs. Unchecked,
//! idents with NUL and CR/LF were stored; so an ident is 1 to 255 printable ASCII characters,
//! no spaces.

use super::IpamError;

/// Longest ident: four times a container id (64 hex digits), room for whatever a runtime puts
/// around one, and the longest file name Linux allows.
pub const MAX_IDENT_BYTES: usize = 255;
/// Characters of a refused ident shown in the error: enough to recognise it.
const SHOWN_CHARS: usize = 40;

pub fn check_ident(ident: &str) -> Result<(), IpamError> {
    let invalid = |why| {
        let start: String = ident.chars().take(SHOWN_CHARS).collect();
        let ellipsis = if start.len() < ident.len() { "..." } else { "" };
        Err(IpamError::InvalidIdent {
            shown: format!("{start:?}{ellipsis}"),
            why,
        })
    };
    if ident.is_empty() {
        return invalid("empty");
    }
    if ident.len() > MAX_IDENT_BYTES {
        return invalid("longer than 255 bytes");
    }
    if !ident.chars().all(|c| c.is_ascii_graphic()) {
        return invalid("only printable ASCII without spaces is allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_and_weave_names_are_idents() {
        let container = "0123456789abcdef".repeat(4);
        for ok in [container.as_str(), "weave:expose", "container-7", "_.-:@"] {
            assert_eq!(check_ident(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn control_characters_spaces_and_huge_idents_are_refused_safely() {
        let huge = "a".repeat(MAX_IDENT_BYTES + 1);
        for bad in [
            "",
            "nul\0id",
            "line\r\nbreak",
            "esc\x1b[31m",
            "a b",
            "caf\u{e9}",
            &huge,
        ] {
            let err = check_ident(bad).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("invalid ident"), "{text}");
            assert!(!text.chars().any(char::is_control), "safe to log: {text:?}");
            assert!(text.len() < 200, "{text}");
        }
    }
}
