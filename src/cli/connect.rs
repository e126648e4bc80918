//! `weft connect [--replace] peer...` and `weft forget peer...`: change the router's list of
//! targets (the peers it keeps dialling).

use std::io::Write;

use super::client::Client;
use super::error::CliError;

/// Adds `peers` to the targets, or makes them the whole list with `replace`.
pub fn connect(
    client: &Client,
    peers: &[String],
    replace: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    // Without --replace an empty list would be a silent no-op, which is never what was meant;
    // with it, an empty list legitimately means "forget every target".
    if peers.is_empty() && !replace {
        return Err(CliError::Usage(
            "connect needs at least one peer (or --replace to drop all targets)",
        ));
    }
    let body = client.post_form("/connect", &connect_form(peers, replace))?;
    print_reply(&body, out)
}

/// Removes `peers` from the targets.
pub fn forget(client: &Client, peers: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    if peers.is_empty() {
        return Err(CliError::Usage("forget needs at least one peer"));
    }
    let body = client.post_form("/forget", &peer_form(peers))?;
    print_reply(&body, out)
}

/// `peer=a&peer=b[&replace=true]`, as Weave's `/connect` takes it.
fn connect_form(peers: &[String], replace: bool) -> Vec<(&'static str, &str)> {
    let mut form = peer_form(peers);
    if replace {
        form.push(("replace", "true"));
    }
    form
}

fn peer_form(peers: &[String]) -> Vec<(&'static str, &str)> {
    peers.iter().map(|peer| ("peer", peer.as_str())).collect()
}

/// The router answers success with an empty body; anything it does say is worth showing.
fn print_reply(body: &str, out: &mut dyn Write) -> Result<(), CliError> {
    if body.trim().is_empty() {
        return Ok(());
    }
    let newline = if body.ends_with('\n') { "" } else { "\n" };
    write!(out, "{body}{newline}").map_err(CliError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn connect_form_repeats_peer_and_adds_replace_only_when_asked() {
        let list = peers(&["10.0.0.1", "host-2:6783"]);
        assert_eq!(
            connect_form(&list, false),
            [("peer", "10.0.0.1"), ("peer", "host-2:6783")]
        );
        assert_eq!(
            connect_form(&list, true),
            [
                ("peer", "10.0.0.1"),
                ("peer", "host-2:6783"),
                ("replace", "true")
            ]
        );
        assert_eq!(connect_form(&[], true), [("replace", "true")]);
    }

    #[test]
    fn empty_peer_lists_are_usage_errors() {
        // The port is never contacted: the check comes first.
        let client = Client::new("127.0.0.1:9");
        let mut out = Vec::new();
        let err = connect(&client, &[], false, &mut out).expect_err("no peers");
        assert!(matches!(err, CliError::Usage(_)), "{err:?}");
        let err = forget(&client, &[], &mut out).expect_err("no peers");
        assert!(matches!(err, CliError::Usage(_)), "{err:?}");
        assert!(out.is_empty());
    }

    #[test]
    fn reply_is_printed_only_when_there_is_one() {
        let mut out = Vec::new();
        print_reply("", &mut out).expect("write to a Vec");
        print_reply("\n", &mut out).expect("write to a Vec");
        assert!(out.is_empty());
        print_reply("already connected to 10.0.0.1", &mut out).expect("write to a Vec");
        assert_eq!(out, b"already connected to 10.0.0.1\n");
    }
}
