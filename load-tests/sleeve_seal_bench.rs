//! The cost of sealing the sleeve, on one core, in memory (no sockets, no threads): how many
//! Gbit/s of datagrams one core seals and opens with each cipher a sleeve key may name,
//! ChaCha20-Poly1305 and AES-256-GCM (`weft::wire::sleeve::seal`), against a plain copy of the same bytes in the same run as the
//! baseline of what merely touching them costs.
//!
//! Two sizes: a datagram carrying one 1,400-byte frame (what an MTU-sized packet makes), and the
//! largest datagram there is, 65,511 bytes of plain datagram sealed into the UDP maximum of
//! 65,535 (what a 64 KiB TSO super-frame becomes, fragmented or not). Each datagram is sealed
//! where it lies and opened where it lies, as the send and receive paths would; the receiver's
//! replay window is checked and advanced every time.
//!
//!     cargo run --release --no-default-features --example sleeve_seal_bench [-- MEGABYTES]

use std::hint::black_box;
use std::time::{Duration, Instant};

use weft::topology::PeerName;
use weft::wire::sleeve::seal::{
    Cipher, Direction, MAX_SEALABLE_LEN, OpeningKeys, SEAL_HEADROOM, SEAL_TAG_LEN, SealingKey,
    SleeveKey,
};
use weft::wire::sleeve::{
    DATAGRAM_HEADER_LEN, ETHERNET_HEADER_LEN, RECORD_HEADER_LEN, encode_datagram_header,
};

/// Rounds of each measurement; the best is reported (the machine is shared).
const ROUNDS: usize = 5;

struct Rates {
    seal: f64,
    open: f64,
    both: f64,
    copy: f64,
}

fn gbit_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9
}

/// A buffer laid out for sealing in place: headroom, a plain datagram of `plain_len` bytes, room
/// for the tag.
fn buffer(plain_len: usize) -> Vec<u8> {
    let mut plain = Vec::with_capacity(plain_len);
    encode_datagram_header(PeerName::from_u64(0x0a00_0000_0001).unwrap(), &mut plain);
    plain.extend((0..plain_len - DATAGRAM_HEADER_LEN).map(|i| i as u8));
    let mut buffer = vec![0; SEAL_HEADROOM];
    buffer.extend_from_slice(&plain);
    buffer.resize(buffer.len() + SEAL_TAG_LEN, 0);
    buffer
}

fn measure(cipher: Cipher, plain_len: usize, total_bytes: usize) -> Rates {
    let datagrams = (total_bytes / plain_len).max(1);
    let bytes = datagrams * plain_len;
    let key = SleeveKey::random(0).with_cipher(cipher);
    let mut best = Rates {
        seal: 0.0,
        open: 0.0,
        both: 0.0,
        copy: 0.0,
    };
    for _ in 0..ROUNDS {
        let now = Instant::now();
        let mut sealing = SealingKey::new(&key, Direction::FromDialler, now);
        let mut opening = OpeningKeys::new(Direction::FromDialler);
        opening.install(&key).expect("the first key");
        let mut datagram = buffer(plain_len);
        let (mut sealing_time, mut opening_time) = (Duration::ZERO, Duration::ZERO);
        let started = Instant::now();
        for _ in 0..datagrams {
            // Opening leaves the plain datagram where sealing expects it: no copy between.
            let before_seal = Instant::now();
            sealing.seal_in_place(&mut datagram).expect("seals");
            let before_open = Instant::now();
            let opened = opening.open(black_box(&mut datagram)).expect("opens");
            black_box(opened.datagram);
            let done = Instant::now();
            sealing_time += before_open - before_seal;
            opening_time += done - before_open;
        }
        let both = started.elapsed();

        let source = buffer(plain_len);
        let mut target = vec![0u8; source.len()];
        let started = Instant::now();
        for _ in 0..datagrams {
            target.copy_from_slice(black_box(&source));
            black_box(&mut target);
        }
        let copy = started.elapsed();

        best.seal = best.seal.max(gbit_per_s(bytes, sealing_time));
        best.open = best.open.max(gbit_per_s(bytes, opening_time));
        best.both = best.both.max(gbit_per_s(bytes, both));
        best.copy = best.copy.max(gbit_per_s(bytes, copy));
    }
    best
}

fn main() {
    let megabytes: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("MEGABYTES: a number"))
        .unwrap_or(1024);
    let total = megabytes << 20;
    let one_frame = DATAGRAM_HEADER_LEN + RECORD_HEADER_LEN + ETHERNET_HEADER_LEN + 1400;
    println!(
        "{megabytes} MiB per size and round, best of {ROUNDS} rounds, one core; Gbit/s of plain \
         datagram bytes"
    );
    println!(
        "keys drawn here use {:?} (the fastest cipher on this CPU)",
        Cipher::fastest_here()
    );
    println!(
        "{:>18} {:>28} {:>8} {:>8} {:>13} {:>8} {:>10}",
        "cipher", "datagram", "seal", "open", "seal+open", "memcpy", "memcpy/s+o"
    );
    for cipher in [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm] {
        for (name, plain_len) in [
            ("1,400-byte frame (1,435 B)", one_frame),
            ("largest (65,511 B)", MAX_SEALABLE_LEN),
        ] {
            let rates = measure(cipher, plain_len, total);
            println!(
                "{:>18} {name:>28} {:>8.2} {:>8.2} {:>13.2} {:>8.1} {:>9.0}x",
                format!("{cipher:?}"),
                rates.seal,
                rates.open,
                rates.both,
                rates.copy,
                rates.copy / rates.both
            );
        }
    }
}
