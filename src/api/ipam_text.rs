//! The IPAM texts, in Weave Net's layouts: the `Service: ipam` section of `weave status` and the
//! per-owner lines of `weave status ipam`.

use std::fmt::Write;

use crate::snapshot::IpamSnapshot;

/// Width of the label column of `weave status` (labels are right-aligned to column 16).
const LABEL_WIDTH: usize = 15;
/// Width of the `name(nickname)` column of `weave status ipam` (Weave Net's `%-37v`).
const OWNER_WIDTH: usize = 37;

/// The `Service: ipam` section of `weave status`.
pub fn section(ipam: &IpamSnapshot) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(out, "{label:>LABEL_WIDTH$}: {value}");
    };
    line("Service", "ipam");
    line("Status", &ipam.status);
    line("Range", &ipam.range);
    line("DefaultSubnet", &ipam.default_subnet);
    if let Some(warning) = &ipam.warning {
        line("Warning", warning);
    }
    out
}

/// `weave status ipam`: one line per owner, ours first:
/// `name(nick)   N IPs (P% of total) (K active)` or `... - unreachable!`.
pub fn ranges(ipam: &IpamSnapshot) -> String {
    let mut out = String::new();
    for share in &ipam.entries {
        let owner = match &share.nick_name {
            Some(nick) => format!("{}({nick})", share.peer),
            None => share.peer.to_string(),
        };
        let suffix = match (share.active, share.reachable) {
            (Some(active), _) => format!("({active} active)"),
            (None, false) => "- unreachable!".to_string(),
            (None, true) => String::new(),
        };
        let line = format!(
            "{owner:<OWNER_WIDTH$} {:>8} IPs ({:04.1}% of total) {suffix}",
            share.addresses, share.percent
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if let Some(warning) = &ipam.warning {
        let _ = writeln!(out, "{warning}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::IpamShare;

    fn snapshot() -> IpamSnapshot {
        IpamSnapshot {
            status: "ready".into(),
            range: "10.32.0.0/12".into(),
            default_subnet: "10.32.0.0/12".into(),
            range_num_ips: 1_048_576,
            active_ips: 2,
            entries: vec![
                IpamShare {
                    peer: "::1".parse().unwrap(),
                    nick_name: Some("one".into()),
                    addresses: 349_526,
                    percent: 33.33,
                    reachable: true,
                    active: Some(2),
                },
                IpamShare {
                    peer: "::2".parse().unwrap(),
                    nick_name: Some("two".into()),
                    addresses: 349_525,
                    percent: 33.33,
                    reachable: true,
                    active: None,
                },
                IpamShare {
                    peer: "::3".parse().unwrap(),
                    nick_name: Some("three".into()),
                    addresses: 52_428,
                    percent: 5.0,
                    reachable: false,
                    active: None,
                },
            ],
            unreachable_count: 1,
            unreachable_percentage: 5.0,
            pending_allocates: 0,
            pending_claims: 0,
            warning: None,
        }
    }

    #[test]
    fn ranges_follow_weave_nets_layout() {
        let expected = "\
00:00:00:00:00:01(one)                  349526 IPs (33.3% of total) (2 active)
00:00:00:00:00:02(two)                  349525 IPs (33.3% of total)
00:00:00:00:00:03(three)                 52428 IPs (05.0% of total) - unreachable!
";
        assert_eq!(ranges(&snapshot()), expected);
    }

    #[test]
    fn section_is_aligned_with_the_router_section() {
        let expected = "        Service: ipam
         Status: ready
          Range: 10.32.0.0/12
  DefaultSubnet: 10.32.0.0/12
";
        assert_eq!(section(&snapshot()), expected);
        let mut split = snapshot();
        split.warning = Some("seeded by different peers".into());
        assert!(section(&split).ends_with("        Warning: seeded by different peers\n"));
    }
}
