//! `weft rmpeer PEER...` and `weft reset`: the IPAM commands that change who owns which range.

use std::io::Write;

use super::client::Client;
use super::error::CliError;
use weft_client::ApiError;

/// Takes over each dead peer's ranges, printing the router's `N IPs taken over from X` lines.
pub fn rmpeer(client: &Client, peers: &[String], out: &mut dyn Write) -> Result<(), CliError> {
    for peer in peers {
        let reply = client.delete(&peer_path(peer))?;
        out.write_all(reply.as_bytes()).map_err(CliError::Output)?;
        if !reply.ends_with('\n') {
            out.write_all(b"\n").map_err(CliError::Output)?;
        }
    }
    Ok(())
}

/// Hands our ranges to a live peer. A router that isn't running is an error with `ipam_only`;
/// otherwise it only earns a note on stderr, because `weft reset` goes on to remove the node's
/// devices, which needs no router (and a node being torn down often has none left).
pub fn reset(client: &Client, ipam_only: bool, out: &mut dyn Write) -> Result<(), CliError> {
    match client.delete("/peer") {
        Ok(reply) => out.write_all(reply.as_bytes()).map_err(CliError::Output),
        Err(e @ ApiError::Unreachable { .. }) if !ipam_only => {
            eprintln!("weft: note: {e}; IP ranges not handed over, removing the devices anyway");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `/peer/<name>`, with the name escaped for a path segment (nicknames are free text).
fn peer_path(peer: &str) -> String {
    let escaped: String = form_urlencoded::byte_serialize(peer.as_bytes()).collect();
    // byte_serialize writes spaces as '+', which a path does not decode.
    format!("/peer/{}", escaped.replace('+', "%20"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_names_and_nicknames_are_escaped_into_one_segment() {
        assert_eq!(
            peer_path("ce:31:00:00:00:02"),
            "/peer/ce%3A31%3A00%3A00%3A00%3A02"
        );
        assert_eq!(peer_path("node 1/a"), "/peer/node%201%2Fa");
    }
}
