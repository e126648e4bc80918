//! Pretty-printing of the router's JSON report, keeping the router's key order.
//!
//! `serde_json::Value` (without the `preserve_order` feature, which would change every map in
//! the build, the Kubernetes client's included) sorts object keys, which would scatter the
//! report's fields (`Version` after `Router`, ...). So the document is transcoded token by token
//! from serde_json's parser to its pretty printer: key order as the router sent it.

use serde_json::ser::PrettyFormatter;

/// Four spaces, like Weave's `json.MarshalIndent(status, "", "    ")`.
const INDENT: &[u8] = b"    ";

/// `text` re-indented, or serde_json's error when it is not a JSON document.
pub fn pretty_json(text: &str) -> Result<String, serde_json::Error> {
    let mut parser = serde_json::Deserializer::from_str(text);
    let mut out = Vec::with_capacity(text.len() * 2);
    let mut printer =
        serde_json::Serializer::with_formatter(&mut out, PrettyFormatter::with_indent(INDENT));
    serde_transcode::transcode(&mut parser, &mut printer)?;
    // Trailing characters after the document are an error, as `from_str` would say.
    parser.end()?;
    out.push(b'\n');
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_indents_by_four() {
        let text = r#"{"Version":"0.1.0","Router":{"Name":"4a:0f:f6:ec:1c:93","Peers":[{"UID":1},{"UID":2}],"Targets":[]},"Empty":{},"Ready":true,"N":1.50e3,"M":-7}"#;
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
            "    \"N\": 1500.0,\n",
            "    \"M\": -7\n",
            "}\n",
        );
        assert_eq!(pretty_json(text).expect("valid JSON"), expected);
    }

    #[test]
    fn strings_keep_their_contents() {
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
