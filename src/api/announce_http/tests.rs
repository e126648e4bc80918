//! What `/announce` accepts before it touches the kernel.

use super::*;

fn parse(body: &str) -> Result<(Ipv4Addr, MacAddr), String> {
    parse_form(None, body.as_bytes()).map_err(|err| err.to_string())
}

#[test]
fn a_unicast_address_and_an_interface_mac_are_taken_from_the_body_or_the_query() {
    let (ip, mac) = parse("ip=10.32.0.7&mac=0a%3A58%3A0a%3A20%3A00%3A07").expect("valid");
    assert_eq!(ip, Ipv4Addr::new(10, 32, 0, 7));
    assert_eq!(mac.to_string(), "0a:58:0a:20:00:07");
    let from_query = parse_form(Some("ip=10.32.0.8&mac=02:00:00:00:00:08"), b"");
    assert!(from_query.is_ok(), "{from_query:?}");
}

#[test]
fn missing_or_unfit_fields_are_refused_with_what_is_wrong() {
    assert!(parse("mac=02:00:00:00:00:08").unwrap_err().contains("ip="));
    assert!(parse("ip=10.32.0.8").unwrap_err().contains("mac="));
    assert!(
        parse("ip=pod&mac=02:00:00:00:00:08")
            .unwrap_err()
            .contains("not an IPv4")
    );
    for ip in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "127.0.0.1"] {
        let refused = parse(&format!("ip={ip}&mac=02:00:00:00:00:08")).unwrap_err();
        assert!(refused.contains("not a pod's unicast address"), "{refused}");
    }
    for mac in [
        "01:00:5e:00:00:01",
        "00:00:00:00:00:00",
        "ff:ff:ff:ff:ff:ff",
    ] {
        let refused = parse(&format!("ip=10.32.0.8&mac={mac}")).unwrap_err();
        assert!(refused.contains("not an interface's MAC"), "{refused}");
    }
    assert!(parse("ip=10.32.0.8&mac=nope").is_err());
}
