use super::*;
use proptest::prelude::*;

fn peer(value: u64) -> PeerName {
    PeerName::from_u64(value).unwrap()
}

fn datagram(sender: PeerName, records: &[Record<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_datagram_header(sender, &mut out);
    for record in records {
        record.encode(&mut out).unwrap();
    }
    out
}

#[test]
fn overhead_matches_weave_plus_the_version_byte() {
    assert_eq!(SLEEVE_OVERHEAD, 63);
    assert_eq!(effective_mtu(1500), 1437);
    assert_eq!(datagram_payload_limit(1500), 1472);
    assert_eq!(effective_mtu(9001), 8938);
    // Loopback's 65536 is capped at the UDP length range.
    assert_eq!(datagram_payload_limit(65_536), 65_535 - 28);
    assert_eq!(effective_mtu(0), 0);
    assert_eq!(effective_mtu(40), 0);
}

#[test]
fn data_record_layout_is_byte_exact() {
    let frame = [0xabu8; 14];
    let bytes = datagram(
        peer(0x0102_0304_0506),
        &[Record::Frame {
            source: peer(0x1112_1314_1516),
            destination: peer(0x2122_2324_2526),
            frame: &frame,
        }],
    );
    let mut expected = vec![1, 2, 3, 4, 5, 6, 0x10];
    expected.extend_from_slice(&[0x11, 0x12, 0x13, 0x14, 0x15, 0x16]);
    expected.extend_from_slice(&[0x21, 0x22, 0x23, 0x24, 0x25, 0x26]);
    expected.extend_from_slice(&[0, 14]);
    expected.extend_from_slice(&frame);
    assert_eq!(bytes, expected);
}

#[test]
fn control_record_layouts_are_byte_exact() {
    let bytes = datagram(
        peer(1),
        &[
            Record::Control {
                source: peer(1),
                control: Control::Heartbeat {
                    connection_id: 0x0102_0304_0506_0708,
                },
            },
            Record::Control {
                source: peer(1),
                control: Control::PmtuAck {
                    probe_id: 0xaabb_ccdd,
                    mtu: 1437,
                },
            },
        ],
    );
    let mut expected = vec![0, 0, 0, 0, 0, 1, 0x10];
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1]);
    expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 4]);
    expected.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd, 0x05, 0x9d]);
    assert_eq!(bytes, expected);
}

#[test]
fn a_probe_is_as_large_as_a_full_frame_at_its_mtu() {
    // A probe that fits the underlay proves that a frame carrying an `mtu`-byte packet fits too.
    let probe = datagram(
        peer(1),
        &[Record::Control {
            source: peer(1),
            control: Control::PmtuProbe {
                probe_id: 7,
                mtu: 1437,
            },
        }],
    );
    assert_eq!(probe.len() + UNDERLAY_IPV4_UDP_OVERHEAD, 1500);
    let mut alone = vec![0xee; 3];
    let control = Control::PmtuProbe {
        probe_id: 7,
        mtu: 1437,
    };
    encode_control_datagram(peer(1), control, &mut alone).unwrap();
    assert_eq!(alone, probe);
    let impossible = Control::PmtuProbe {
        probe_id: 8,
        mtu: u16::MAX,
    };
    assert!(encode_control_datagram(peer(1), impossible, &mut alone).is_err());
    assert!(alone.is_empty(), "a failed encode leaves no half datagram");
    let parsed = SleeveDatagram::parse(&probe).unwrap();
    assert_eq!(
        parsed.records().collect::<Vec<_>>(),
        vec![Record::Control {
            source: peer(1),
            control: Control::PmtuProbe {
                probe_id: 7,
                mtu: 1437
            }
        }]
    );
    assert_eq!(
        encode_control_record(
            peer(1),
            Control::PmtuProbe {
                probe_id: 0,
                mtu: u16::MAX
            },
            &mut Vec::new()
        ),
        Err(SleeveError::FrameTooLong {
            len: usize::from(u16::MAX) + 14
        })
    );
}

#[test]
fn malformed_datagrams_are_rejected_with_the_reason() {
    let good = datagram(
        peer(1),
        &[Record::Frame {
            source: peer(2),
            destination: peer(3),
            frame: &[0; 20],
        }],
    );
    let parse = |bytes: &[u8]| SleeveDatagram::parse(bytes).map(|d| d.record_count());
    assert_eq!(parse(&good), Ok(1));
    assert_eq!(parse(&good[..6]), Err(SleeveError::TooShort { len: 6 }));
    assert_eq!(parse(&good[..7]), Ok(0));
    assert_eq!(
        parse(&good[..10]),
        Err(SleeveError::TruncatedRecordHeader { offset: 7 })
    );
    assert_eq!(
        parse(&good[..good.len() - 1]),
        Err(SleeveError::TruncatedRecord {
            offset: 7,
            declared: 20,
            available: 19
        })
    );
    assert_eq!(
        parse(&vec![0x10; MAX_DATAGRAM_LEN + 1]),
        Err(SleeveError::TooLong {
            len: MAX_DATAGRAM_LEN + 1
        })
    );

    let mut bad = good.clone();
    bad[6] = 0x20;
    assert_eq!(
        parse(&bad),
        Err(SleeveError::UnsupportedVersion { version: 2 })
    );
    bad[6] = 0x11;
    assert_eq!(parse(&bad), Err(SleeveError::IsFragment));
    bad[6] = 0x12;
    assert_eq!(parse(&bad), Err(SleeveError::ReservedFlags { flags: 2 }));

    let mut short_frame = good[..7].to_vec();
    short_frame.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 3, 0, 2, 9, 9]);
    assert_eq!(
        parse(&short_frame),
        Err(SleeveError::FrameTooShort { len: 2 })
    );

    let mut unknown = good[..7].to_vec();
    unknown.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 9]);
    assert_eq!(
        parse(&unknown),
        Err(SleeveError::UnknownControl { offset: 7, kind: 9 })
    );

    // A heartbeat one byte short, and a probe whose padding was cut.
    let mut short_heartbeat = good[..7].to_vec();
    short_heartbeat.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 8, 1]);
    short_heartbeat.extend_from_slice(&[0; 7]);
    assert_eq!(
        parse(&short_heartbeat),
        Err(SleeveError::MalformedControl {
            offset: 7,
            kind: 1,
            len: 8
        })
    );
    let mut cut_probe = good[..7].to_vec();
    cut_probe.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7, 3]);
    cut_probe.extend_from_slice(&[0, 0, 0, 1, 0x05, 0x9d]);
    assert_eq!(
        parse(&cut_probe),
        Err(SleeveError::MalformedControl {
            offset: 7,
            kind: 3,
            len: 7
        })
    );
}

#[test]
fn frames_cannot_use_the_control_destination_or_bad_sizes() {
    let zero = PeerName::from_bytes(CONTROL_DESTINATION);
    let mut out = Vec::new();
    assert_eq!(
        encode_frame_record(peer(1), zero, &[0; 14], &mut out),
        Err(SleeveError::ReservedDestination)
    );
    assert_eq!(
        encode_frame_record(peer(1), peer(2), &[0; 13], &mut out),
        Err(SleeveError::FrameTooShort { len: 13 })
    );
    assert_eq!(
        encode_frame_record(peer(1), peer(2), &vec![0; MAX_FRAME_LEN + 1], &mut out),
        Err(SleeveError::FrameTooLong {
            len: MAX_FRAME_LEN + 1
        })
    );
    assert!(out.is_empty(), "failed encodes must write nothing");
}

/// An owned record, so proptest can generate lists of them.
#[derive(Debug, Clone)]
enum OwnedRecord {
    Frame(PeerName, PeerName, Vec<u8>),
    Control(PeerName, Control),
}

impl OwnedRecord {
    fn borrow(&self) -> Record<'_> {
        match self {
            OwnedRecord::Frame(source, destination, frame) => Record::Frame {
                source: *source,
                destination: *destination,
                frame,
            },
            OwnedRecord::Control(source, control) => Record::Control {
                source: *source,
                control: *control,
            },
        }
    }
}

fn any_peer() -> impl Strategy<Value = PeerName> {
    (1u64..(1 << 48)).prop_map(peer)
}

fn any_control() -> impl Strategy<Value = Control> {
    prop_oneof![
        any::<u64>().prop_map(|connection_id| Control::Heartbeat { connection_id }),
        any::<u64>().prop_map(|connection_id| Control::HeartbeatAck { connection_id }),
        (any::<u32>(), 0u16..2000).prop_map(|(probe_id, mtu)| Control::PmtuProbe { probe_id, mtu }),
        (any::<u32>(), any::<u16>()).prop_map(|(probe_id, mtu)| Control::PmtuAck { probe_id, mtu }),
    ]
}

fn any_record() -> impl Strategy<Value = OwnedRecord> {
    prop_oneof![
        (
            any_peer(),
            any_peer(),
            prop::collection::vec(any::<u8>(), MIN_FRAME_LEN..200)
        )
            .prop_map(|(s, d, f)| OwnedRecord::Frame(s, d, f)),
        (any_peer(), any_control()).prop_map(|(s, c)| OwnedRecord::Control(s, c)),
    ]
}

proptest! {
    #[test]
    fn datagrams_round_trip(sender in any_peer(), records in prop::collection::vec(any_record(), 0..10)) {
        let borrowed: Vec<Record<'_>> = records.iter().map(OwnedRecord::borrow).collect();
        let bytes = datagram(sender, &borrowed);
        let expected_len: usize =
            DATAGRAM_HEADER_LEN + borrowed.iter().map(Record::encoded_len).sum::<usize>();
        prop_assert_eq!(bytes.len(), expected_len);
        let parsed = SleeveDatagram::parse(&bytes).unwrap();
        prop_assert_eq!(parsed.sender(), sender);
        prop_assert_eq!(parsed.record_count(), borrowed.len());
        prop_assert_eq!(parsed.records().collect::<Vec<_>>(), borrowed);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(parsed) = SleeveDatagram::parse(&bytes) {
            prop_assert_eq!(parsed.records().count(), parsed.record_count());
        }
    }

    #[test]
    fn parse_never_panics_on_damaged_datagrams(
        records in prop::collection::vec(any_record(), 1..5),
        position in any::<prop::sample::Index>(),
        value in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let borrowed: Vec<Record<'_>> = records.iter().map(OwnedRecord::borrow).collect();
        let mut bytes = datagram(peer(1), &borrowed);
        let at = position.index(bytes.len());
        bytes[at] = value;
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Ok(parsed) = SleeveDatagram::parse(&bytes) {
            prop_assert_eq!(parsed.records().count(), parsed.record_count());
        }
    }
}
