//! Pretty-printing of the router's JSON report, keeping the router's key order.
//!
//! `serde_json::Value` (without the `preserve_order` feature, which we do not enable) sorts object
//! keys, which would scatter the report's fields (`Version` after `Router`, ...). So serde_json
//! checks that the text is JSON, and a small re-indenter lays out the tokens as the router sent
//! them, numbers and escapes untouched.

use serde::de::IgnoredAny;

/// Four spaces, like Weave's `json.MarshalIndent(status, "", "    ")`.
const INDENT: &str = "    ";

/// `text` re-indented, or serde_json's error when it is not a JSON document.
pub fn pretty_json(text: &str) -> Result<String, serde_json::Error> {
    serde_json::from_str::<IgnoredAny>(text)?;
    Ok(reindent(text))
}

/// Lays out valid JSON one member or element per line. Whitespace outside strings is dropped and
/// re-created; string contents (where braces, commas and escaped quotes may appear) are copied.
fn reindent(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => copy_string(&mut chars, &mut out),
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                skip_whitespace(&mut chars);
                // Empty containers stay on one line: `{}`, `[]`.
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// Copies the rest of a string literal (the opening quote already consumed) verbatim.
fn copy_string(chars: &mut impl Iterator<Item = char>, out: &mut String) {
    out.push('"');
    let mut escaped = false;
    for c in chars.by_ref() {
        out.push(c);
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return,
            _ => {}
        }
    }
}

fn skip_whitespace(chars: &mut std::iter::Peekable<impl Iterator<Item = char>>) {
    while chars.next_if(|c| c.is_whitespace()).is_some() {}
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str(INDENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_indents_by_four() {
        let text = r#"{"Version":"0.1.0","Router":{"Name":"4a:0f:f6:ec:1c:93","Peers":[{"UID":1},{"UID":2}],"Targets":[]},"Empty":{},"Ready":true,"N":1.50e3}"#;
        let expected = concat!(
            "{\n",
            "    \"Version\": \"0.1.0\",\n",
            "    \"Router\": {\n",
            "        \"Name\": \"4a:0f:f6:ec:1c:93\",\n",
            "        \"Peers\": [\n",
            "            {\n",
            "                \"UID\": 1\n",
            "            },\n",
            "            {\n",
            "                \"UID\": 2\n",
            "            }\n",
            "        ],\n",
            "        \"Targets\": []\n",
            "    },\n",
            "    \"Empty\": {},\n",
            "    \"Ready\": true,\n",
            "    \"N\": 1.50e3\n",
            "}\n",
        );
        assert_eq!(pretty_json(text).expect("valid JSON"), expected);
    }

    #[test]
    fn strings_are_copied_verbatim() {
        let text = "{ \"Info\" : \"a, {b}: [c] \\\"d\\\" \\\\\" , \"X\" : [ ] }";
        let expected = concat!(
            "{\n",
            "    \"Info\": \"a, {b}: [c] \\\"d\\\" \\\\\",\n",
            "    \"X\": []\n",
            "}\n",
        );
        assert_eq!(pretty_json(text).expect("valid JSON"), expected);
    }

    #[test]
    fn already_pretty_input_comes_out_the_same() {
        let once = pretty_json(r#"{"a":[1,2,{"b":null}]}"#).expect("valid JSON");
        assert_eq!(pretty_json(&once).expect("valid JSON"), once);
    }

    #[test]
    fn rejects_non_json() {
        assert!(pretty_json("router not ready").is_err());
        assert!(pretty_json("{\"a\":1").is_err());
    }
}
