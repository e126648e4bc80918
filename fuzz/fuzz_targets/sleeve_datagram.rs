//! Fuzz target: a sleeve UDP datagram as the receive path parses it ([`Datagram::parse`]:
//! records, or one fragment when the flag says so).
//!
//! Properties, for records: iterating yields exactly the counted records; every record the parser
//! accepts can be encoded again, and the re-encoded datagram has the same length and parses to
//! the same records (the bytes may differ only in a PMTU probe's padding, which is not read).
//! For a fragment: it re-encodes to exactly the received bytes, unless its destination is the
//! reserved control one, which the encoder refuses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::wire::sleeve::fragment::{Datagram, encode_fragment};
use weft::wire::sleeve::{
    Record, RecordDestination, SleeveDatagram, SleeveError, encode_datagram_header,
};

fuzz_target!(|data: &[u8]| {
    match Datagram::parse(data) {
        Ok(Datagram::Records(datagram)) => {
            let records: Vec<Record<'_>> = datagram.records().collect();
            assert_eq!(records.len(), datagram.record_count());
            let mut again = Vec::with_capacity(data.len());
            encode_datagram_header(datagram.sender(), &mut again);
            for record in &records {
                let before = again.len();
                record.encode(&mut again).expect("a parsed record encodes");
                assert_eq!(again.len() - before, record.encoded_len());
                if let Record::Frame { .. } = record {
                    assert_ne!(record.destination(), RecordDestination::Control);
                }
            }
            assert_eq!(again.len(), data.len());
            let reparsed = SleeveDatagram::parse(&again).expect("a re-encoded datagram parses");
            assert_eq!(reparsed.sender(), datagram.sender());
            assert!(reparsed.records().eq(records.iter().copied()));
        }
        Ok(Datagram::Fragment(fragment)) => {
            let mut again = Vec::with_capacity(data.len());
            let encoded = encode_fragment(
                fragment.sender,
                &fragment.meta,
                fragment.offset,
                fragment.chunk,
                &mut again,
            );
            if fragment.meta.destination == RecordDestination::Control {
                assert_eq!(encoded, Err(SleeveError::ReservedDestination));
            } else {
                encoded.expect("a parsed fragment encodes");
                assert_eq!(again, data, "a fragment re-encodes to its bytes");
            }
        }
        Err(_) => {}
    }
});
