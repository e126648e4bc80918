//! The allocator's status as the API shows it (texts, report, metrics).

use crate::ipam::IpamStatus;
use crate::snapshot::{IpamShare, IpamSnapshot};

pub fn snapshot(status: &IpamStatus, warning: Option<String>) -> IpamSnapshot {
    IpamSnapshot {
        // The allocator's states display as Weave Net's status strings.
        status: status.state.to_string(),
        range: status.range.to_string(),
        default_subnet: status.default_subnet.to_string(),
        range_num_ips: status.max_ips,
        active_ips: status.active_ips,
        entries: status
            .shares
            .iter()
            .map(|share| IpamShare {
                peer: share.peer,
                nick_name: share.nickname.clone(),
                addresses: share.addresses,
                percent: share.percent,
                reachable: share.reachable,
                active: share.active,
            })
            .collect(),
        unreachable_count: status.unreachable_count,
        unreachable_percentage: status.unreachable_percentage,
        pending_allocates: status.pending_allocates,
        pending_claims: status.pending_claims,
        warning,
    }
}
