use super::*;
use proptest::prelude::*;

fn subnet(text: &str) -> TrustedSubnet {
    text.parse().unwrap()
}

#[test]
fn subnets_parse_and_contain_what_their_prefix_covers() {
    let lan = subnet("192.168.48.0/24");
    assert!(lan.contains(Ipv4Addr::new(192, 168, 48, 7)));
    assert!(!lan.contains(Ipv4Addr::new(192, 168, 49, 7)));
    assert!(subnet("0.0.0.0/0").contains(Ipv4Addr::new(203, 0, 113, 9)));
    assert!(subnet("10.0.0.5/32").contains(Ipv4Addr::new(10, 0, 0, 5)));
    assert!(!subnet("10.0.0.5/32").contains(Ipv4Addr::new(10, 0, 0, 6)));
    assert_eq!(lan.to_string(), "192.168.48.0/24");
    for bad in [
        "192.168.48.0",
        "192.168.48.0/33",
        "10.0.0/8",
        "fe80::/10",
        "x/8",
    ] {
        assert!(bad.parse::<TrustedSubnet>().is_err(), "{bad}");
    }
}

#[test]
fn with_a_password_only_trusted_peers_may_use_fastdp() {
    let inside = Ipv4Addr::new(10, 1, 2, 3);
    let outside = Ipv4Addr::new(198, 51, 100, 12);
    assert_eq!(
        FastdpPolicy::new(false, vec![]).forced_sleeve(outside),
        None
    );
    let policy = FastdpPolicy::new(true, vec![subnet("10.0.0.0/8")]);
    assert_eq!(policy.forced_sleeve(inside), None);
    assert_eq!(policy.forced_sleeve(outside), Some(NO_ESP_REASON));
    assert_eq!(
        FastdpPolicy::new(true, vec![]).forced_sleeve(inside),
        Some(NO_ESP_REASON)
    );
}

proptest! {
    #[test]
    fn parsing_never_panics(text in ".{0,24}") {
        let _ = text.parse::<TrustedSubnet>();
    }

    #[test]
    fn a_subnet_round_trips_and_contains_its_own_network(a in any::<u32>(), prefix in 0u8..=32) {
        let text = format!("{}/{prefix}", Ipv4Addr::from(a));
        let parsed: TrustedSubnet = text.parse().unwrap();
        prop_assert!(parsed.contains(Ipv4Addr::from(a)));
        prop_assert_eq!(parsed.to_string(), text);
    }
}
