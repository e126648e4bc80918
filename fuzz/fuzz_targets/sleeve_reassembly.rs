//! Fuzz target: reassembly of fragmented frames at their destination ([`Reassembler`]), driven
//! by a script of operations read from the input, one byte each plus its arguments:
//!
//! - `0`: a fragment datagram off the network (2-byte length, then the bytes), parsed with
//!   [`Fragment::parse`] and inserted when it parses;
//! - `1`: the clock moves on by 4 ms times the next byte (500 ms times a frame out);
//! - `2`: a real frame (id, length and path limit from the input) split with
//!   [`encode_fragments`] and delivered in an order shuffled from the input, maybe with one
//!   fragment lost (at most [`MAX_SPLITS`] an input; further ones are skipped);
//! - `3`: the last reassembled frame's buffer is handed back for reuse.
//!
//! Properties: the buffered bytes never exceed [`MAX_BUFFERED_BYTES`]; a reassembled frame has
//! the length, source, destination and virtio header its fragments announced; a frame split
//! into a reassembler holding nothing else comes back byte for byte after its last fragment
//! (and not before), or not at all when a fragment was lost.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use weft::dataplane::sleeve::{MAX_BUFFERED_BYTES, Reassembler};
use weft::topology::PeerName;
use weft::wire::sleeve::RecordDestination;
use weft::wire::sleeve::fragment::{
    FRAGMENT_HEADER_LEN, Fragment, FragmentMeta, MAX_REASSEMBLED_LEN, encode_fragments,
};
use weft::wire::sleeve::{MAX_DATAGRAM_LEN, MIN_FRAME_LEN};

/// Most split operations (`2`) one input carries out.
const MAX_SPLITS: usize = 4;

/// Reads the script front to back; every read past the end yields nothing.
struct Script<'a>(&'a [u8]);

impl<'a> Script<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }

    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

fn name(n: u64) -> PeerName {
    PeerName::from_u64(n).expect("fits 48 bits")
}

/// Inserts one fragment and checks what comes out against what the fragment announced.
fn insert(
    reassembler: &mut Reassembler,
    fragment: &Fragment<'_>,
    now: Instant,
    last: &mut Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let result = reassembler.insert(fragment, now);
    assert!(reassembler.buffered_bytes() <= MAX_BUFFERED_BYTES);
    let whole = result.ok().flatten()?;
    assert_eq!(whole.frame.len(), fragment.meta.total_len as usize);
    assert_eq!(whole.source, fragment.meta.source);
    assert_eq!(whole.destination, fragment.meta.destination);
    assert_eq!(whole.vnet_hdr, fragment.meta.vnet_hdr);
    *last = Some(whole.frame.clone());
    Some(whole.frame)
}

/// Splits a frame described by the script and delivers its fragments in a shuffled order.
fn split(
    reassembler: &mut Reassembler,
    script: &mut Script<'_>,
    now: Instant,
    last: &mut Option<Vec<u8>>,
) {
    let (Some(id), Some(len), Some(limit), Some(seed), Some(lose)) = (
        script.byte(),
        script.u16(),
        script.u16(),
        script.byte(),
        script.byte(),
    ) else {
        return;
    };
    let total = (MIN_FRAME_LEN + usize::from(len) * 4).min(MAX_REASSEMBLED_LEN);
    // At least 64 bytes a fragment, so that one frame is at most about a thousand of them.
    let limit = (FRAGMENT_HEADER_LEN + 64 + usize::from(limit)).min(MAX_DATAGRAM_LEN);
    let frame: Vec<u8> = (0..total).map(|i| (i as u8) ^ id).collect();
    let meta = FragmentMeta {
        source: name(0x0a_0b_0c_0d_0e_0f),
        destination: RecordDestination::Peer(name(1)),
        frame_id: u32::from(id),
        total_len: total as u32,
        vnet_hdr: [id; 10],
    };
    let mut datagrams = Vec::new();
    let count = encode_fragments(name(2), &meta, &frame, limit, &mut datagrams)
        .expect("a frame within bounds splits");
    let mut fragments: Vec<Fragment<'_>> = datagrams
        .chunks(limit)
        .map(|datagram| Fragment::parse(datagram).expect("an encoded fragment parses"))
        .collect();
    assert_eq!(fragments.len(), count);
    // Fisher-Yates with a xorshift generator seeded from the script.
    let mut state = u32::from(seed) | 0x100;
    for i in (1..fragments.len()).rev() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        fragments.swap(i, state as usize % (i + 1));
    }
    let lost = (lose & 1 == 1).then(|| usize::from(lose >> 1) % fragments.len());
    let alone = reassembler.in_flight() == 0;
    let mut completed = None;
    for (index, fragment) in fragments.iter().enumerate() {
        if Some(index) == lost {
            continue;
        }
        if let Some(whole) = insert(reassembler, fragment, now, last) {
            assert!(completed.is_none(), "one frame completes once");
            completed = Some((index, whole));
        }
    }
    if alone {
        match lost {
            None => {
                let (index, whole) = completed.expect("every fragment arrived");
                assert_eq!(
                    index,
                    fragments.len() - 1,
                    "complete only with the last fragment"
                );
                assert_eq!(whole, frame, "reassembled byte for byte");
                assert_eq!(reassembler.in_flight(), 0);
            }
            Some(_) => {
                assert!(
                    completed.is_none(),
                    "a frame missing a fragment never completes"
                );
                assert_eq!(reassembler.in_flight(), usize::from(fragments.len() > 1));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut script = Script(data);
    let mut reassembler = Reassembler::new();
    let start = Instant::now();
    let mut elapsed = Duration::ZERO;
    let mut last = None;
    let mut splits = 0;
    while let Some(op) = script.byte() {
        let now = start + elapsed;
        match op % 4 {
            0 => {
                let Some(len) = script.u16() else { break };
                let datagram = script.bytes(usize::from(len));
                if let Ok(fragment) = Fragment::parse(datagram) {
                    insert(&mut reassembler, &fragment, now, &mut last);
                }
            }
            1 => {
                let Some(ms) = script.byte() else { break };
                elapsed += Duration::from_millis(4 * u64::from(ms));
                reassembler.expire(start + elapsed);
            }
            // A few splits an input: each makes a frame of up to 64 KiB, and hundreds of them
            // in one input would spend the run copying bytes rather than exploring.
            2 if splits < MAX_SPLITS => {
                splits += 1;
                split(&mut reassembler, &mut script, now, &mut last);
            }
            2 => {}
            _ => {
                if let Some(frame) = last.take() {
                    reassembler.recycle(frame);
                }
            }
        }
    }
    let _ = reassembler.take_dropped();
});
