//! Weave Net's text layouts — `weave status` and its `peers`, `connections` and `targets`
//! sections — rendered from a [`RouterStatus`] snapshot.
//!
//! Pure functions, no I/O: the HTTP handlers serve these strings as they are. Operators (and their
//! scripts) read this output, so the layouts follow Weave's templates byte for byte where we keep
//! them, and the tests pin every space.

use std::fmt::{self, Display, Write as _};

use crate::snapshot::{ConnectionState, KubeStatus, PeerStatus, RouterStatus};
use crate::topology::PeerName;

/// Width of the right-aligned label column of `weave status` (the colon sits in column 16).
const LABEL_WIDTH: usize = 15;
/// Column widths of Weave's `status connections` and `status peers` lines.
const ADDRESS_WIDTH: usize = 21;
const STATE_WIDTH: usize = 11;
const OVERLAY_WIDTH: usize = 6;
/// Width of the `encrypted`/`unencrypted` column Weave adds when the mesh has a password.
const ENCRYPTION_WIDTH: usize = 11;
/// The attribute saying whether a link's pod traffic is encrypted (`true`/`false`), as Weave's.
pub const ENCRYPTED_ATTR: &str = "encrypted";
const PEER_WIDTH: usize = 37;

/// Order of the per-state counts in the `Connections:` line: settled states first, then the ones
/// still being worked on, then failures.
const SUMMARY_ORDER: [ConnectionState; 5] = [
    ConnectionState::Established,
    ConnectionState::Pending,
    ConnectionState::Connecting,
    ConnectionState::Retrying,
    ConnectionState::Failed,
];

/// The router section of `weave status`, followed (after a blank line) by `ipam` when given.
pub fn status(s: &RouterStatus, ipam: Option<&str>) -> String {
    let mut out = String::new();
    // We do no phone-home version check, so the version stands alone on its line.
    labelled(&mut out, "Version", &s.version);
    out.push('\n');
    labelled(&mut out, "Service", "router");
    labelled(&mut out, "Protocol", protocol(s));
    labelled(&mut out, "Name", peer_label(s.name, Some(&s.nick_name)));
    labelled(&mut out, "Encryption", enabled(s.encryption));
    match &s.kubernetes {
        Some(kube) => labelled(&mut out, "PeerDiscovery", kube_discovery(kube)),
        None => labelled(&mut out, "PeerDiscovery", enabled(s.peer_discovery)),
    }
    labelled(&mut out, "Targets", s.targets.len());
    labelled(&mut out, "Connections", connections_summary(s));
    labelled(&mut out, "Peers", peers_summary(s));
    labelled(&mut out, "TrustedSubnets", trusted_subnets(s));
    if let Some(ipam) = ipam {
        out.push('\n');
        out.push_str(ipam);
        if !ipam.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// `weave status peers`: every known peer with the connections it reports, local peer first and
/// the others in name order, so the output is stable from one call to the next.
pub fn peers(s: &RouterStatus) -> String {
    let local = s.peers.iter().filter(|p| p.name == s.name);
    let mut others: Vec<&PeerStatus> = s.peers.iter().filter(|p| p.name != s.name).collect();
    others.sort_by_key(|p| p.name);

    let mut out = String::new();
    for peer in local.chain(others) {
        push_line(&mut out, peer_label(peer.name, Some(&peer.nick_name)));
        let mut connections: Vec<_> = peer.connections.iter().collect();
        connections.sort_by(|a, b| (a.name, &a.address).cmp(&(b.name, &b.address)));
        for c in connections {
            let remote = peer_label(c.name, c.nick_name.as_deref());
            let state = if c.established {
                "established"
            } else {
                "pending"
            };
            push_line(
                &mut out,
                format_args!(
                    "   {} {:<ADDRESS_WIDTH$} {remote:<PEER_WIDTH$} {state}",
                    arrow(c.outbound),
                    c.address
                ),
            );
        }
    }
    out
}

/// `weave status connections`: one line per live link or not-yet-connected target.
pub fn connections(s: &RouterStatus) -> String {
    let mut out = String::new();
    for c in &s.connections {
        let mut line = format!(
            "{} {:<ADDRESS_WIDTH$} {:<STATE_WIDTH$}",
            arrow(c.outbound),
            c.address,
            c.state.as_str()
        );
        match c.peer {
            Some(peer) => {
                if s.encryption {
                    let encrypted = c
                        .attrs
                        .iter()
                        .any(|(key, value)| key == ENCRYPTED_ATTR && value == "true");
                    let word = if encrypted {
                        "encrypted"
                    } else {
                        "unencrypted"
                    };
                    append(&mut line, format_args!(" {word:<ENCRYPTION_WIDTH$}"));
                }
                if let Some(overlay) = &c.overlay {
                    append(&mut line, format_args!(" {overlay:<OVERLAY_WIDTH$}"));
                }
                append(
                    &mut line,
                    format_args!(" {}", peer_label(peer, c.nick_name.as_deref())),
                );
            }
            None if !c.info.is_empty() => append(&mut line, format_args!(" {}", c.info)),
            None => {}
        }
        // Weave ran the attributes together (`encrypted=truemtu=8912`); we separate them.
        // The encryption has its own column.
        for (key, value) in c.attrs.iter().filter(|(key, _)| key != ENCRYPTED_ATTR) {
            append(&mut line, format_args!(" {key}={value}"));
        }
        // A link's info says why it is on its overlay (e.g. no ESP for fastdp).
        if c.peer.is_some() && !c.info.is_empty() {
            append(&mut line, format_args!(" ({})", c.info));
        }
        // Padding is for aligning what follows; a line must not end in it.
        push_line(&mut out, line.trim_end());
    }
    out
}

/// `weave status targets`: one target per line, as given on the command line or to `connect`.
pub fn targets(s: &RouterStatus) -> String {
    let mut out = String::new();
    for target in &s.targets {
        push_line(&mut out, target);
    }
    out
}

/// `Protocol: weft 1..2`, or `weft 1` when only one version is spoken (as Weave prints it).
fn protocol(s: &RouterStatus) -> String {
    if s.protocol_min_version == s.protocol_max_version {
        format!("{} {}", s.protocol, s.protocol_max_version)
    } else {
        format!(
            "{} {}..{}",
            s.protocol, s.protocol_min_version, s.protocol_max_version
        )
    }
}

/// `2 (2 established)`, listing only the states that occur; just `0` when there are none.
fn connections_summary(s: &RouterStatus) -> String {
    let counts = SUMMARY_ORDER.iter().map(|&state| {
        let n = s.connections.iter().filter(|c| c.state == state).count();
        (n, state.as_str())
    });
    with_counts(s.connections.len().to_string(), "", counts, "")
}

/// `3 (with 6 established connections)`: connections as every peer record reports them, so each
/// link between two known peers counts twice, as in Weave.
fn peers_summary(s: &RouterStatus) -> String {
    let reported = s.peers.iter().flat_map(|p| &p.connections);
    let established = reported.clone().filter(|c| c.established).count();
    let pending = reported.filter(|c| !c.established).count();
    with_counts(
        s.peers.len().to_string(),
        "with ",
        [(established, "established"), (pending, "pending")].into_iter(),
        " connections",
    )
}

/// `head (prefix 2 established, 1 failed suffix)`, leaving out zero counts and the parenthesis
/// altogether when every count is zero.
fn with_counts<'a>(
    head: String,
    prefix: &str,
    counts: impl Iterator<Item = (usize, &'a str)>,
    suffix: &str,
) -> String {
    let parts: Vec<String> = counts
        .filter(|&(n, _)| n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if parts.is_empty() {
        head
    } else {
        format!("{head} ({prefix}{}{suffix})", parts.join(", "))
    }
}

fn trusted_subnets(s: &RouterStatus) -> String {
    if s.trusted_subnets.is_empty() {
        "none".to_string()
    } else {
        s.trusted_subnets.join(", ")
    }
}

/// `name(nick)`; just `name` when the nickname is not known (a peer whose record has not arrived).
fn peer_label(name: PeerName, nick_name: Option<&str>) -> String {
    match nick_name {
        Some(nick) => format!("{name}({nick})"),
        None => name.to_string(),
    }
}

/// `kubernetes (3 nodes)`, or why the Nodes are not known.
fn kube_discovery(kube: &KubeStatus) -> String {
    match (&kube.error, kube.synced) {
        (Some(error), _) => format!(
            "kubernetes ({} nodes known; waiting for the API at {}: {error})",
            kube.nodes, kube.api_url
        ),
        (None, false) => format!("kubernetes (listing the nodes at {})", kube.api_url),
        (None, true) => format!("kubernetes ({} nodes)", kube.nodes),
    }
}

fn enabled(on: bool) -> &'static str {
    if on { "enabled" } else { "disabled" }
}

fn arrow(outbound: bool) -> &'static str {
    if outbound { "->" } else { "<-" }
}

/// One `weave status` line: the label right-aligned so that its colon sits in column 16.
fn labelled(out: &mut String, label: &str, value: impl Display) {
    push_line(out, format_args!("{label:>LABEL_WIDTH$}: {value}"));
}

fn push_line(out: &mut String, line: impl Display) {
    append(out, format_args!("{line}\n"));
}

fn append(out: &mut String, text: fmt::Arguments<'_>) {
    // Formatting into a String only fails if a Display impl reports an error, and ours never do.
    let _ = out.write_fmt(text);
}

#[cfg(test)]
mod tests;
