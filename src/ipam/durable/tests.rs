//! The allocator and its disk: restored from what was written, and never ahead of it.

use std::time::Instant;

use super::*;
use crate::ipam::{InitMode, Reply, Request};
use crate::topology::{PeerName, PeerUid};

const UNIVERSE: &str = "10.0.0.0/28";

fn config() -> AllocatorConfig {
    let universe = UNIVERSE.parse().expect("a CIDR");
    AllocatorConfig {
        local: PeerName::from_u64(1).expect("a 48-bit name"),
        uid: PeerUid(1007),
        nickname: "node1".into(),
        universe,
        default_subnet: universe,
        mode: InitMode::Consensus {
            quorum: 1,
            expected: 0,
        },
    }
}

fn allocate(ident: &str) -> Request {
    Request::Allocate {
        ident: ident.into(),
        subnet: UNIVERSE.parse().expect("a CIDR"),
    }
}

/// A stand-in for the store: the last bytes written, and whether writes fail.
#[derive(Default)]
struct Disk {
    bytes: Option<Vec<u8>>,
    full: bool,
}

impl Disk {
    fn writer(&mut self) -> impl FnMut(&[u8]) -> Result<(), String> + '_ {
        |bytes| {
            if self.full {
                return Err("no space left on device".into());
            }
            self.bytes = Some(bytes.to_vec());
            Ok(())
        }
    }
}

fn allocated(outcome: &Outcome) -> Vec<String> {
    outcome
        .effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Reply {
                result: Ok(Reply::Allocated(cidr)),
                ..
            } => Some(cidr.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn what_was_written_is_restored_and_persist_effects_are_not_handed_on() {
    let mut disk = Disk::default();
    let mut durable = DurableAllocator::restore(config(), None).expect("a fresh peer");
    let outcome = durable.run(
        Some(1),
        |allocator| allocator.request(1, allocate("pod-a"), Instant::now()),
        &mut disk.writer(),
    );
    assert_eq!(allocated(&outcome), ["10.0.0.1/28"]);
    assert!(outcome.refused.is_empty() && outcome.health.is_empty());
    assert!(
        !outcome
            .effects
            .iter()
            .any(|effect| matches!(effect, Effect::Persist(_)))
    );
    let restored = DurableAllocator::restore(config(), disk.bytes.as_deref()).expect("restored");
    assert_eq!(
        restored.allocator().lookup("pod-a")[0].to_string(),
        "10.0.0.1/28"
    );
}

#[test]
fn unreadable_bytes_refuse_to_restore() {
    let err = DurableAllocator::restore(config(), Some(b"\xc1 not msgpack")).err();
    assert!(matches!(err, Some(RestoreError::Undecodable(_))), "{err:?}");
}

#[test]
fn a_failed_write_refuses_the_request_rolls_back_and_is_reported_once_until_it_recovers() {
    let mut disk = Disk {
        full: true,
        ..Disk::default()
    };
    let mut durable = DurableAllocator::restore(config(), None).expect("a fresh peer");
    let now = Instant::now();
    let first = durable.run(
        Some(1),
        |allocator| allocator.request(1, allocate("pod-a"), now),
        &mut disk.writer(),
    );
    assert_eq!(
        first.health,
        [WriteHealth::Failing("no space left on device".into())]
    );
    assert_eq!(first.refused, [(1, "no space left on device".to_string())]);
    assert!(
        first.effects.is_empty(),
        "no reply and no gossip: {:?}",
        first.effects
    );
    assert!(
        durable.allocator().lookup("pod-a").is_empty(),
        "memory is not ahead of the disk"
    );
    let second = durable.run(
        Some(2),
        |allocator| allocator.request(2, allocate("pod-b"), now),
        &mut disk.writer(),
    );
    assert!(second.health.is_empty(), "reported once");
    assert_eq!(second.refused.len(), 1);

    disk.full = false;
    let third = durable.run(
        Some(3),
        |allocator| allocator.request(3, allocate("pod-a"), now),
        &mut disk.writer(),
    );
    assert_eq!(third.health, [WriteHealth::Recovered]);
    assert_eq!(allocated(&third), ["10.0.0.1/28"]);
    let restored = DurableAllocator::restore(config(), disk.bytes.as_deref()).expect("restored");
    assert!(restored.allocator().lookup("pod-b").is_empty());
    assert_eq!(restored.allocator().lookup("pod-a").len(), 1);
}
