//! `weft status [peers|connections|targets]`: fetch one of the router's status texts and print it.

use std::io::Write;

use super::StatusSection;
use super::client::Client;
use super::error::CliError;

/// Prints the section the operator asked for (the whole `weave status` when none).
pub fn run(
    client: &Client,
    section: Option<StatusSection>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let body = client.get(path(section))?;
    out.write_all(framed(&body, section).as_bytes())
        .map_err(CliError::Output)
}

/// The API path serving a section.
pub fn path(section: Option<StatusSection>) -> &'static str {
    match section {
        None => "/status",
        Some(StatusSection::Peers) => "/status/peers",
        Some(StatusSection::Connections) => "/status/connections",
        Some(StatusSection::Targets) => "/status/targets",
        Some(StatusSection::Ipam) => "/status/ipam",
    }
}

/// The text as printed. Weave's script wraps the full status in blank lines (`echo; curl; echo`),
/// which sets it apart from the command line; the sections are printed as they are, for scripts.
fn framed(body: &str, section: Option<StatusSection>) -> String {
    match section {
        None => {
            let newline = if body.ends_with('\n') { "" } else { "\n" };
            format!("\n{body}{newline}\n")
        }
        Some(_) => body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_section_has_its_path() {
        assert_eq!(path(None), "/status");
        assert_eq!(path(Some(StatusSection::Peers)), "/status/peers");
        assert_eq!(
            path(Some(StatusSection::Connections)),
            "/status/connections"
        );
        assert_eq!(path(Some(StatusSection::Targets)), "/status/targets");
        assert_eq!(path(Some(StatusSection::Ipam)), "/status/ipam");
    }

    #[test]
    fn full_status_is_wrapped_in_blank_lines() {
        let body = "        Version: 0.1.0\n";
        assert_eq!(framed(body, None), "\n        Version: 0.1.0\n\n");
        assert_eq!(
            framed("        Version: 0.1.0", None),
            "\n        Version: 0.1.0\n\n"
        );
    }

    #[test]
    fn sections_are_printed_as_they_are() {
        let body = "10.0.0.5:6783\n";
        assert_eq!(framed(body, Some(StatusSection::Targets)), body);
        assert_eq!(framed("", Some(StatusSection::Connections)), "");
    }
}
