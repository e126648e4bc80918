//! Unit and property tests of addresses, ranges and CIDRs.

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

#[test]
fn default_range_is_weave_nets() {
    let parsed = cidr("10.32.0.0/12");
    assert_eq!(DEFAULT_RANGE, parsed);
    assert_eq!(parsed.size(), 1_048_576);
    assert_eq!(parsed.start(), addr("10.32.0.0"));
    assert_eq!(parsed.end(), addr("10.48.0.0"));
    assert_eq!(parsed.host_range(), range("10.32.0.1", "10.47.255.255"));
    assert!(parsed.contains(addr("10.47.255.255")));
    assert!(!parsed.contains(addr("10.48.0.0")));
    assert!(!parsed.contains(addr("10.31.255.255")));
    assert_eq!(parsed.to_string(), "10.32.0.0/12");
}

#[test]
fn slash_30_has_two_host_addresses() {
    let subnet = cidr("10.0.0.4/30");
    assert_eq!(subnet.size(), 4);
    assert_eq!(subnet.host_range(), range("10.0.0.5", "10.0.0.7"));
    assert_eq!(subnet.host_range().size(), 2);
}

#[test]
fn rejects_bad_cidrs() {
    let rejected = |text: &str| text.parse::<Cidr>().unwrap_err();
    assert!(matches!(
        rejected("10.32.0.1/12"),
        AddressError::HostBitsSet { network, .. } if network == addr("10.32.0.0")
    ));
    assert_eq!(
        rejected("10.0.0.0/31"),
        AddressError::TooSmall { prefix_len: 31 }
    );
    assert_eq!(
        rejected("10.0.0.0/32"),
        AddressError::TooSmall { prefix_len: 32 }
    );
    assert!(matches!(
        rejected("0.0.0.0/0"),
        AddressError::ReachesTopOfAddressSpace { .. }
    ));
    assert!(matches!(
        rejected("255.255.255.252/30"),
        AddressError::ReachesTopOfAddressSpace { .. }
    ));
    assert_eq!(
        rejected("10.0.0.0/33"),
        AddressError::PrefixTooLong { prefix_len: 33 }
    );
    for bad in [
        "",
        "10.0.0.0",
        "10.0.0.0/",
        "/8",
        "10.0.0/8",
        "10.0.0.0/+8",
        "10.0.0.0/ 8",
        "10.0.0.0/008",
        "10.0.0.256/8",
        "a.b.c.d/8",
    ] {
        assert!(
            matches!(bad.parse::<Cidr>(), Err(AddressError::InvalidCidr { .. })),
            "{bad:?} should be an invalid CIDR"
        );
    }
}

#[test]
fn largest_possible_cidrs_fit() {
    let low_half = cidr("0.0.0.0/1");
    assert_eq!(low_half.size(), 1 << 31);
    assert_eq!(low_half.end(), addr("128.0.0.0"));
    assert_eq!(cidr("255.255.255.248/30").end(), addr("255.255.255.252"));
}

#[test]
fn range_queries() {
    let r = range("10.0.0.10", "10.0.0.20");
    assert_eq!(r.size(), 10);
    assert!(r.contains(addr("10.0.0.10")));
    assert!(!r.contains(addr("10.0.0.20")));
    assert_eq!(
        r.intersection(&range("10.0.0.15", "10.0.0.30")),
        Some(range("10.0.0.15", "10.0.0.20"))
    );
    assert_eq!(r.intersection(&range("10.0.0.20", "10.0.0.30")), None);
    assert!(r.contains_range(&range("10.0.0.12", "10.0.0.20")));
    assert!(!r.contains_range(&range("10.0.0.12", "10.0.0.21")));
    assert!(AddressRange::new(addr("10.0.0.2"), addr("10.0.0.1")).is_none());
    assert!(AddressRange::single(addr("255.255.255.255")).is_none());
    assert_eq!(r.to_string(), "[10.0.0.10, 10.0.0.20)");
}

#[test]
fn aligned_blocks_are_the_canonical_cidr_cover() {
    // 10.0.0.1 .. 10.0.0.255 (a /24's host range plus broadcast).
    let blocks = range("10.0.0.1", "10.0.1.0").aligned_blocks();
    let sizes: Vec<u32> = blocks.iter().map(AddressRange::size).collect();
    assert_eq!(sizes, vec![1, 2, 4, 8, 16, 32, 64, 128]);
    assert_eq!(blocks[7], range("10.0.0.128", "10.0.1.0"));
    // A /24's host range misses both ends, so its largest blocks are two /26s; the higher wins.
    let host = cidr("10.0.0.0/24").host_range();
    assert_eq!(
        host.largest_aligned_block(),
        Some(range("10.0.0.128", "10.0.0.192"))
    );
    assert_eq!(range("10.0.0.4", "10.0.0.4").largest_aligned_block(), None);
    // Ties go to the highest block.
    assert_eq!(
        range("10.0.0.2", "10.0.0.6").largest_aligned_block(),
        Some(range("10.0.0.4", "10.0.0.6"))
    );
}

#[test]
fn serde_is_text_in_json_and_numbers_in_messagepack() {
    let a = addr("10.32.0.5");
    assert_eq!(serde_json::to_string(&a).unwrap(), "\"10.32.0.5\"");
    let c = cidr("10.32.0.0/12");
    assert_eq!(serde_json::to_string(&c).unwrap(), "\"10.32.0.0/12\"");
    let packed = rmp_serde::to_vec(&a).unwrap();
    assert_eq!(rmp_serde::from_slice::<u32>(&packed).unwrap(), a.as_u32());
    // A CIDR with host bits set is refused on the way in, in both forms.
    assert!(serde_json::from_str::<Cidr>("\"10.32.0.1/12\"").is_err());
    let bad = rmp_serde::to_vec(&(addr("10.32.0.1").as_u32(), 12u8)).unwrap();
    assert!(rmp_serde::from_slice::<Cidr>(&bad).is_err());
}

/// A valid CIDR: any prefix 1..=30 whose subnet stays below 255.255.255.255.
fn any_cidr() -> impl Strategy<Value = Cidr> {
    (1u8..=30, any::<u32>()).prop_filter_map("reaches the top", |(prefix_len, bits)| {
        let network = bits & (u32::MAX << (32 - prefix_len));
        Cidr::new(Address::new(network), prefix_len).ok()
    })
}

proptest! {
    #[test]
    fn address_text_and_serde_round_trip(value in any::<u32>()) {
        let a = Address::new(value);
        prop_assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
        let json = serde_json::to_string(&a).unwrap();
        prop_assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), a);
        let packed = rmp_serde::to_vec(&a).unwrap();
        prop_assert_eq!(rmp_serde::from_slice::<Address>(&packed).unwrap(), a);
    }

    #[test]
    fn cidr_text_and_serde_round_trip(c in any_cidr()) {
        prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
        let json = serde_json::to_string(&c).unwrap();
        prop_assert_eq!(serde_json::from_str::<Cidr>(&json).unwrap(), c);
        let packed = rmp_serde::to_vec(&c).unwrap();
        prop_assert_eq!(rmp_serde::from_slice::<Cidr>(&packed).unwrap(), c);
        prop_assert_eq!(c.range().size(), c.size());
        prop_assert_eq!(c.host_range().size(), c.size() - 2);
        prop_assert!(c.contains(c.start()) && !c.range().contains(c.end()));
    }

    #[test]
    fn parse_never_panics(input in ".{0,24}", digits in "[0-9./]{0,20}") {
        let _ = input.parse::<Address>();
        let _ = input.parse::<Cidr>();
        let _ = digits.parse::<Cidr>();
    }

    #[test]
    fn aligned_blocks_tile_the_range(start in any::<u32>(), len in 0u32..1 << 24) {
        let end = start.saturating_add(len);
        let r = AddressRange::new(Address::new(start), Address::new(end)).unwrap();
        let blocks = r.aligned_blocks();
        let mut cursor = r.start;
        for block in &blocks {
            prop_assert_eq!(block.start, cursor);
            prop_assert!(block.size().is_power_of_two());
            prop_assert_eq!(block.start.as_u32() % block.size(), 0);
            cursor = block.end;
        }
        prop_assert_eq!(cursor, r.end);
        prop_assert!(blocks.len() <= 62);
        if let Some(largest) = r.largest_aligned_block() {
            prop_assert!(blocks.iter().all(|b| b.size() <= largest.size()));
        }
    }
}
