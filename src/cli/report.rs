//! `weft report`: the router's full state as pretty-printed JSON.

use std::io::Write;

use super::client::Client;
use super::error::CliError;
use super::pretty_json::pretty_json;

/// Fetches `/report` and prints it indented, in the order the router wrote it.
pub fn run(client: &Client, out: &mut dyn Write) -> Result<(), CliError> {
    let body = client.get_json("/report")?;
    let text = pretty_json(&body).map_err(CliError::BadReport)?;
    out.write_all(text.as_bytes()).map_err(CliError::Output)
}
