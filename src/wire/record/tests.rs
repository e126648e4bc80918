use super::*;
use proptest::prelude::*;

#[test]
fn known_bytes() {
    let mut out = BytesMut::new();
    encode_record(&Record::Abort, &mut out).unwrap();
    encode_record(&Record::Sealed(Bytes::from(vec![0xab; 16])), &mut out).unwrap();
    let mut expected = vec![0x00, 0x00, 0x00, 0x10];
    expected.extend_from_slice(&[0xab; 16]);
    assert_eq!(&out[..], &expected[..]);
    assert_eq!(decode_record(&mut out).unwrap(), Some(Record::Abort));
    assert_eq!(
        decode_record(&mut out).unwrap(),
        Some(Record::Sealed(Bytes::from(vec![0xab; 16])))
    );
    assert!(out.is_empty());
}

#[test]
fn bounds_are_checked_before_the_body() {
    // A length that cannot hold a tag fails from the prefix alone.
    let mut short = BytesMut::from(&[0x00, 0x0f][..]);
    assert!(matches!(
        decode_record(&mut short),
        Err(WireError::RecordTooShort { len: 15, min: 16 })
    ));
    // The longest length waits for its body, and nothing longer can be said.
    let mut longest = BytesMut::from(&[0xff, 0xff, 0x01][..]);
    assert_eq!(decode_record(&mut longest).unwrap(), None);
    assert_eq!(longest.len(), 3, "nothing consumed while incomplete");
    let too_big = Record::Sealed(Bytes::from(vec![0; MAX_RECORD_BYTES + 1]));
    assert!(matches!(
        encode_record(&too_big, &mut BytesMut::new()),
        Err(WireError::FrameTooLarge { .. })
    ));
    let too_small = Record::Sealed(Bytes::from(vec![0; RECORD_TAG_BYTES - 1]));
    assert!(matches!(
        encode_record(&too_small, &mut BytesMut::new()),
        Err(WireError::RecordTooShort { .. })
    ));
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        Just(Record::Abort),
        prop::collection::vec(any::<u8>(), RECORD_TAG_BYTES..600)
            .prop_map(|body| Record::Sealed(Bytes::from(body))),
    ]
}

proptest! {
    #[test]
    fn records_round_trip_whatever_the_reads(
        records in prop::collection::vec(record(), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = BytesMut::new();
        for record in &records {
            encode_record(record, &mut bytes).unwrap();
        }
        // Delivered in two reads split anywhere, as a socket may.
        let cut = cut.index(bytes.len() + 1);
        let mut src = BytesMut::from(&bytes[..cut]);
        let mut decoded = Vec::new();
        while let Some(record) = decode_record(&mut src).unwrap() {
            decoded.push(record);
        }
        src.extend_from_slice(&bytes[cut..]);
        while let Some(record) = decode_record(&mut src).unwrap() {
            decoded.push(record);
        }
        prop_assert_eq!(decoded, records);
        prop_assert!(src.is_empty());
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut src = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode_record(&mut src) {}
    }
}
