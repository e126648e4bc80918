//! Unit tests of the local space, and a property test against a plain model (sets of
//! addresses) over random sequences of every operation.

use std::collections::BTreeSet;

use super::*;
use proptest::prelude::*;

fn addr(text: &str) -> Address {
    text.parse().unwrap()
}

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

fn range(start: &str, end: &str) -> AddressRange {
    AddressRange::new(addr(start), addr(end)).unwrap()
}

fn owning(ranges: &[AddressRange]) -> Space {
    let mut space = Space::new();
    space.add_ranges(ranges);
    space
}

#[test]
fn allocates_lowest_host_address_never_network_or_broadcast() {
    let subnet = cidr("10.0.0.4/30");
    let mut space = owning(&[subnet.range()]);
    assert_eq!(space.allocate(subnet), Some(addr("10.0.0.5")));
    assert_eq!(space.allocate(subnet), Some(addr("10.0.0.6")));
    assert_eq!(space.allocate(subnet), None, "10.0.0.7 is the broadcast");
    assert!(!space.is_allocated(addr("10.0.0.4")));
    assert_eq!(space.free_count(), 2);
}

#[test]
fn allocates_only_inside_owned_ranges_and_the_subnet() {
    let mut space = owning(&[
        range("10.32.0.0", "10.32.0.2"),
        range("10.32.1.10", "10.32.1.12"),
    ]);
    let subnet = cidr("10.32.0.0/16");
    assert_eq!(space.allocate(subnet), Some(addr("10.32.0.1")));
    assert_eq!(space.allocate(subnet), Some(addr("10.32.1.10")));
    assert_eq!(space.allocate(cidr("10.33.0.0/16")), None);
    assert_eq!(space.allocate(subnet), Some(addr("10.32.1.11")));
    assert_eq!(space.allocate(subnet), None);
}

#[test]
fn freed_address_is_the_next_one_allocated() {
    let subnet = cidr("10.32.0.0/24");
    let mut space = owning(&[subnet.range()]);
    for _ in 0..10 {
        space.allocate(subnet).unwrap();
    }
    space.free(addr("10.32.0.4")).unwrap();
    space.free(addr("10.32.0.7")).unwrap();
    assert_eq!(space.allocate(subnet), Some(addr("10.32.0.4")));
    assert_eq!(space.allocate(subnet), Some(addr("10.32.0.7")));
    assert_eq!(space.allocate(subnet), Some(addr("10.32.0.11")));
}

#[test]
fn claim_and_free_check_ownership_and_state() {
    let mut space = owning(&[range("10.32.0.0", "10.32.0.16")]);
    assert_eq!(
        space.claim(addr("10.32.0.16")),
        Err(SpaceError::NotOwned {
            address: addr("10.32.0.16")
        })
    );
    space.claim(addr("10.32.0.9")).unwrap();
    assert_eq!(
        space.claim(addr("10.32.0.9")),
        Err(SpaceError::AlreadyAllocated {
            address: addr("10.32.0.9")
        })
    );
    space.free(addr("10.32.0.9")).unwrap();
    assert_eq!(
        space.free(addr("10.32.0.9")),
        Err(SpaceError::NotAllocated {
            address: addr("10.32.0.9")
        })
    );
    assert!(matches!(
        space.free(addr("10.33.0.0")),
        Err(SpaceError::NotOwned { .. })
    ));
    // A claimed network address is allowed: claims are of addresses already in use.
    space.claim(addr("10.32.0.0")).unwrap();
}

#[test]
fn donates_upper_half_of_a_block_larger_than_half_the_free_space() {
    // Owned [.0, .16) inside a /24: free host addresses .1-.15 (15); the largest block is
    // [.8, .16) (8 > 15 / 2), so its upper half goes.
    let mut space = owning(&[range("10.0.0.0", "10.0.0.16")]);
    let donated = space.donate(cidr("10.0.0.0/24")).unwrap();
    assert_eq!(donated, range("10.0.0.12", "10.0.0.16"));
    assert_eq!(space.owned(), vec![range("10.0.0.0", "10.0.0.12")]);
}

#[test]
fn donates_the_largest_block_when_it_is_at_most_half() {
    let universe = cidr("10.32.0.0/12");
    let mut space = owning(&[universe.range()]);
    let donated = space.donate(universe).unwrap();
    // Host range [10.32.0.1, 10.47.255.255): the largest aligned blocks are two /14s.
    assert_eq!(donated, range("10.40.0.0", "10.44.0.0"));
    assert_eq!(space.owned_count(), universe.size() - donated.size());
}

#[test]
fn donation_takes_free_space_only_and_at_most_half_of_it() {
    let subnet = cidr("10.0.0.0/28");
    let mut space = owning(&[subnet.range()]);
    for _ in 0..6 {
        space.allocate(subnet).unwrap(); // .1 to .6
    }
    // Free host addresses: .7-.14 (8). Largest block [.8, .12) of 4 <= 4.
    let donated = space.donate(subnet).unwrap();
    assert_eq!(donated, range("10.0.0.8", "10.0.0.12"));
    assert_eq!(space.allocated_count(), 6);
    assert!(!space.has_allocations_in(donated));
}

#[test]
fn last_free_address_is_donated_and_then_nothing() {
    let subnet = cidr("10.0.0.0/30");
    let mut space = owning(&[subnet.range()]);
    space.allocate(subnet).unwrap();
    assert_eq!(
        space.donate(subnet),
        Some(AddressRange::single(addr("10.0.0.2")).unwrap())
    );
    assert_eq!(space.donate(subnet), None);
    assert_eq!(space.allocate(subnet), None);
}

#[test]
fn release_requires_owned_and_free() {
    let mut space = owning(&[range("10.0.0.0", "10.0.0.16")]);
    space.claim(addr("10.0.0.5")).unwrap();
    assert_eq!(
        space.release(range("10.0.0.4", "10.0.0.8")),
        Err(SpaceError::RangeHasAllocations {
            range: range("10.0.0.4", "10.0.0.8"),
            address: addr("10.0.0.5")
        })
    );
    assert_eq!(
        space.release(range("10.0.0.12", "10.0.0.20")),
        Err(SpaceError::RangeNotOwned {
            range: range("10.0.0.12", "10.0.0.20"),
            address: addr("10.0.0.16")
        })
    );
    space.release(range("10.0.0.8", "10.0.0.16")).unwrap();
    assert_eq!(space.owned(), vec![range("10.0.0.0", "10.0.0.8")]);
    assert_eq!(space.free_in(range("10.0.0.0", "10.0.1.0")), 7);
}

#[test]
fn a_whole_slash_12_allocates_without_walking_addresses() {
    let universe = cidr("10.32.0.0/12");
    let mut space = owning(&[universe.range()]);
    for _ in 0..50_000 {
        space.allocate(universe).unwrap();
    }
    assert_eq!(space.allocated_ranges().len(), 1, "one run of allocations");
    space.free(addr("10.32.0.100")).unwrap();
    assert_eq!(space.allocate(universe), Some(addr("10.32.0.100")));
    assert_eq!(space.free_count(), universe.size() - 50_000);
}

/// One operation of the property test, on the addresses 10.0.0.0 to 10.0.0.127.
#[derive(Clone, Debug)]
enum Op {
    Add(u32, u32),
    Allocate(Cidr),
    Claim(u32),
    Free(u32),
    Donate(Cidr),
    Release(u32, u32),
}

const BASE: u32 = 0x0A00_0000;

fn subnet() -> impl Strategy<Value = Cidr> {
    (25u8..=30, 0u32..128).prop_map(|(prefix_len, offset)| {
        let size = 1u32 << (32 - prefix_len);
        Cidr::new(Address::new(BASE + offset / size * size), prefix_len).unwrap()
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u32..128, 1u32..32).prop_map(|(s, n)| Op::Add(s, (s + n).min(128))),
        subnet().prop_map(Op::Allocate),
        subnet().prop_map(Op::Allocate),
        (0u32..128).prop_map(Op::Claim),
        (0u32..128).prop_map(Op::Free),
        subnet().prop_map(Op::Donate),
        (0u32..128, 1u32..8).prop_map(|(s, n)| Op::Release(s, (s + n).min(128))),
    ]
}

fn offsets(r: AddressRange) -> std::ops::Range<u32> {
    r.start.as_u32() - BASE..r.end.as_u32() - BASE
}

proptest! {
    /// After any sequence of operations the space agrees with a model of owned and allocated
    /// sets: allocated + free == owned, nothing allocated twice or outside what is owned,
    /// allocation returns the lowest free owned host address, donations are free, aligned and
    /// at most half (rounded up) of the free host addresses.
    #[test]
    fn space_agrees_with_a_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut space = Space::new();
        let mut owned: BTreeSet<u32> = BTreeSet::new();
        let mut allocated: BTreeSet<u32> = BTreeSet::new();
        let at = |offset: u32| Address::new(BASE + offset);
        for op in ops {
            match op {
                Op::Add(s, e) => {
                    space.add_ranges(&[AddressRange::new(at(s), at(e)).unwrap()]);
                    owned.extend(s..e);
                }
                Op::Allocate(within) => {
                    let expected = offsets(within.host_range())
                        .find(|a| owned.contains(a) && !allocated.contains(a));
                    let got = space.allocate(within).map(|a| a.as_u32() - BASE);
                    prop_assert_eq!(got, expected);
                    if let Some(a) = got {
                        prop_assert!(allocated.insert(a), "allocated twice");
                    }
                }
                Op::Claim(a) => {
                    let ok = owned.contains(&a) && !allocated.contains(&a);
                    prop_assert_eq!(space.claim(at(a)).is_ok(), ok);
                    if ok {
                        allocated.insert(a);
                    }
                }
                Op::Free(a) => {
                    prop_assert_eq!(space.free(at(a)).is_ok(), allocated.remove(&a));
                }
                Op::Donate(within) => {
                    let free_hosts = offsets(within.host_range())
                        .filter(|a| owned.contains(a) && !allocated.contains(a))
                        .count() as u32;
                    match space.donate(within) {
                        None => prop_assert_eq!(free_hosts, 0),
                        Some(block) => {
                            prop_assert!(block.size().is_power_of_two());
                            prop_assert_eq!(block.start.as_u32() % block.size(), 0);
                            prop_assert!(block.size() <= free_hosts.div_ceil(2));
                            for a in offsets(block) {
                                prop_assert!(owned.remove(&a), "donated an address not owned");
                                prop_assert!(!allocated.contains(&a), "donated an allocation");
                            }
                        }
                    }
                }
                Op::Release(s, e) => {
                    let ok = (s..e).all(|a| owned.contains(&a) && !allocated.contains(&a));
                    let r = AddressRange::new(at(s), at(e)).unwrap();
                    prop_assert_eq!(space.release(r).is_ok(), ok);
                    if ok {
                        for a in s..e {
                            owned.remove(&a);
                        }
                    }
                }
            }
            prop_assert!(allocated.is_subset(&owned));
            prop_assert_eq!(space.owned_count() as usize, owned.len());
            prop_assert_eq!(space.allocated_count() as usize, allocated.len());
            prop_assert_eq!(
                space.allocated_count() + space.free_count(),
                space.owned_count()
            );
            let all = AddressRange::new(at(0), at(128)).unwrap();
            prop_assert_eq!(space.free_in(all) as usize, owned.len() - allocated.len());
        }
    }
}
