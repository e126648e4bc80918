//! Egress masquerading: pods keep their overlay addresses between each other, but traffic from
//! the pod range to anywhere else leaves the node with the node's address (and traffic from
//! outside the range into it, e.g. from the host or a NodePort, arrives from the bridge's
//! address, so replies come back through this node). These are Weave Net's NAT rules, kept in a
//! nftables table of our own (`table ip weft`), so no other table or chain is ever touched and
//! `weft reset` removes exactly what the router added. This module owns that table; it drives
//! the `nft` tool (package nftables), whose scripts are applied as one atomic transaction.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::error::{DataplaneError, Result};

/// Family and name of our table, as `nft list table ip weft` names it.
pub const TABLE: &str = "ip weft";

/// Multicast (224.0.0.0/4, RFC 5771): never masqueraded, as in Weave Net (its source must stay
/// the pod's for group membership to make sense).
const MULTICAST: &str = "224.0.0.0/4";

/// What to tell an operator when the `nft` tool is missing.
const NEED_NFT: &str = "run `nft` (install nftables: apt-get install nftables)";

/// The nftables script that (re)creates our table: adding then deleting the table first makes
/// the whole script one replace, whether or not the table existed (nft -f is one transaction).
/// `range` is the pod range, `bridge` the bridge pods hang off, `overlay_udp_ports` the UDP
/// ports the overlays' encapsulated traffic uses (sleeve, VXLAN).
///
/// A NAT chain turns connection tracking on for every packet of the namespace, including the
/// encapsulated overlay traffic, which never needs it: every pod flow would hold an entry for its
/// VXLAN datagrams (their source port follows the inner flow) and could fill the node's conntrack
/// table. The `raw`-priority chains exempt those datagrams before conntrack sees them. (The
/// per-packet cost of having NAT at all, about 6% of fastdp's single-stream throughput here, is
/// not removed by this: every node that masquerades pods pays it.)
pub fn masquerade_script(range: (Ipv4Addr, u8), bridge: &str, overlay_udp_ports: &[u16]) -> String {
    let (network, prefix_len) = range;
    let range = format!("{network}/{prefix_len}");
    let ports = overlay_udp_ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let untracked = if ports.is_empty() {
        String::new()
    } else {
        format!(
            "\tchain overlay_untracked_in {{\n\
             \t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\tudp dport {{ {ports} }} notrack\n\
             \t}}\n\
             \tchain overlay_untracked_out {{\n\
             \t\ttype filter hook output priority raw; policy accept;\n\
             \t\tudp dport {{ {ports} }} notrack\n\
             \t}}\n"
        )
    };
    format!(
        "add table {TABLE}\n\
         delete table {TABLE}\n\
         table {TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {range} ip daddr {MULTICAST} return\n\
         \t\tip saddr {range} ip daddr {range} return\n\
         \t\tip saddr {range} masquerade\n\
         \t\tip saddr != {range} ip daddr {range} oifname \"{bridge}\" masquerade\n\
         \t}}\n\
         {untracked}\
         }}\n"
    )
}

/// Creates (or replaces) our table with the masquerading rules for `range`.
pub fn install(range: (Ipv4Addr, u8), bridge: &str, overlay_udp_ports: &[u16]) -> Result<()> {
    let script = masquerade_script(range, bridge, overlay_udp_ports);
    nft(&["-f", "-"], Some(&script)).map(drop)
}

/// Removes our table; `Ok(false)` when there was none (so `weft reset` can be rerun).
pub fn remove() -> Result<bool> {
    if current()?.is_none() {
        return Ok(false);
    }
    let mut delete = vec!["delete", "table"];
    delete.extend(TABLE.split(' '));
    nft(&delete, None).map(|_| true)
}

/// The current ruleset of our table (`nft list table ip weft`), for tests and `weft report`-like
/// inspection; `None` when the table does not exist.
pub fn current() -> Result<Option<String>> {
    let mut list = vec!["list", "table"];
    list.extend(TABLE.split(' '));
    match nft(&list, None) {
        Ok(text) => Ok(Some(text)),
        Err(DataplaneError::Kernel { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs `nft ARGS` (with `stdin` fed to it) in the calling thread's network namespace.
fn nft(args: &[&str], stdin: Option<&str>) -> Result<String> {
    let name = format!("nft {}", args.join(" "));
    let io_error = |op, source| DataplaneError::Io {
        op,
        name: name.clone(),
        source,
    };
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| {
            io_error(
                NEED_NFT,
                std::io::Error::new(source.kind(), source.to_string()),
            )
        })?;
    if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(script.as_bytes())
            .map_err(|source| io_error("write the nftables script to", source))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|source| io_error("wait for", source))?;
    if !output.status.success() {
        return Err(DataplaneError::Kernel {
            op: "apply nftables rules",
            name,
            errno: None,
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_replaces_our_table_and_spares_pod_to_pod_traffic() {
        let script = masquerade_script((Ipv4Addr::new(10, 32, 0, 0), 12), "weave", &[6783, 6784]);
        assert!(script.starts_with("add table ip weft\ndelete table ip weft\n"));
        let rules: Vec<&str> = script.lines().map(str::trim).collect();
        let between_pods = rules
            .iter()
            .position(|r| *r == "ip saddr 10.32.0.0/12 ip daddr 10.32.0.0/12 return")
            .expect("pod-to-pod return rule");
        let egress = rules
            .iter()
            .position(|r| *r == "ip saddr 10.32.0.0/12 masquerade")
            .expect("egress rule");
        assert!(between_pods < egress, "the return must come first");
        assert_eq!(
            rules
                .iter()
                .filter(|r| **r == "udp dport { 6783, 6784 } notrack")
                .count(),
            2,
            "the overlays' datagrams skip conntrack both ways: {script}"
        );
    }
}
