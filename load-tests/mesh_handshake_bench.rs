//! The cost of the mesh password, on one core, in memory (no sockets, no actors), so that the
//! numbers are the CPU the crypto and the state machines take and nothing else:
//!
//! - the Argon2id stretching of the password into the mesh key, done once per router start
//!   (median of 5);
//! - a link's whole handshake, both ends driven in turn until each has registered and heard the
//!   other's first heartbeat, without and with the password (mean over many; the difference is
//!   what Noise adds per link, both ends together);
//! - the Noise channel alone: headers, `NNpsk2`'s two messages, and the first transport record.
//!
//!     cargo run --release --no-default-features --example mesh_handshake_bench [-- LINKS]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use weft::actors::connection::{
    LinkOutput, LinkState, LinkTimers, LocalIdentity, MeshKey, SecureChannel,
};
use weft::topology::{PeerName, PeerUid};
use weft::wire::LinkNonce;

const TIMERS: LinkTimers = LinkTimers {
    handshake_timeout: Duration::from_secs(10),
    heartbeat_interval: Duration::from_secs(10),
    read_timeout: Duration::from_secs(30),
    sleeve_rekey_interval: Duration::from_secs(120),
};

fn identity(name: u64) -> LocalIdentity {
    LocalIdentity {
        name: PeerName::from_u64(name).unwrap(),
        nickname: format!("node-{name}"),
        uid: PeerUid(name * 1000),
        listen_port: 6783,
        overlays: vec!["fastdp".into(), "sleeve".into()],
    }
}

/// Carries out one end's outputs as a shell that admits and registers at once; the bytes it
/// sends, and whether it is established.
fn step(state: &mut LinkState, now: Instant) -> (Vec<u8>, bool) {
    let (mut sent, mut established) = (Vec::new(), false);
    while let Some(output) = state.poll_output() {
        match output {
            LinkOutput::Transmit(bytes) => sent.extend_from_slice(&bytes),
            LinkOutput::Admit => state.on_admission(now, Ok(())),
            LinkOutput::Handshaken(_) => state.on_registered(now, Ok(())),
            LinkOutput::Established => established = true,
            LinkOutput::Closed(reason) => panic!("the link closed: {reason}"),
            _ => {}
        }
    }
    (sent, established)
}

fn link(key: Option<&Arc<MeshKey>>) {
    let now = Instant::now();
    let mut dialler = LinkState::new(
        &identity(1),
        TIMERS,
        key.cloned(),
        LinkNonce::random(),
        true,
        now,
    );
    let mut acceptor = LinkState::new(
        &identity(2),
        TIMERS,
        key.cloned(),
        LinkNonce::random(),
        false,
        now,
    );
    let (mut up_dialler, mut up_acceptor) = (false, false);
    while !(up_dialler && up_acceptor) {
        let (to_acceptor, established) = step(&mut dialler, now);
        up_dialler |= established;
        let (to_dialler, established) = step(&mut acceptor, now);
        up_acceptor |= established;
        acceptor.on_bytes(now, &to_acceptor);
        dialler.on_bytes(now, &to_dialler);
    }
}

fn noise_channel(key: &Arc<MeshKey>) {
    let (mut a_out, mut b_out) = (BytesMut::new(), BytesMut::new());
    let mut a = SecureChannel::start(Some(key.clone()), true, &mut a_out);
    let mut b = SecureChannel::start(Some(key.clone()), false, &mut b_out);
    a.send(b"hello", &mut a_out).unwrap();
    let (mut a_plain, mut b_plain) = (BytesMut::new(), BytesMut::new());
    while b_plain.is_empty() {
        let (to_b, to_a) = (a_out.split(), b_out.split());
        b.receive(&to_b, &mut b_plain, &mut b_out).unwrap();
        a.receive(&to_a, &mut a_plain, &mut a_out).unwrap();
    }
}

fn mean(runs: usize, mut once: impl FnMut()) -> Duration {
    for _ in 0..runs / 10 {
        once();
    }
    let started = Instant::now();
    for _ in 0..runs {
        once();
    }
    started.elapsed() / runs as u32
}

fn main() {
    let links: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("LINKS: a number"))
        .unwrap_or(2000);
    let mut derivations: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            MeshKey::derive(b"correct horse battery staple").unwrap();
            started.elapsed()
        })
        .collect();
    derivations.sort();
    println!(
        "Argon2id mesh key derivation (64 MiB, 3 passes, 1 lane): median {:.1} ms (min {:.1}, max {:.1})",
        derivations[2].as_secs_f64() * 1e3,
        derivations[0].as_secs_f64() * 1e3,
        derivations[4].as_secs_f64() * 1e3,
    );
    let key = Arc::new(MeshKey::from_bytes([0x42; 32]));
    let clear = mean(links, || link(None));
    let sealed = mean(links, || link(Some(&key)));
    let noise = mean(links, || noise_channel(&key));
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "link handshake, both ends, {links} links: without password {:.0} us, with password {:.0} us (+{:.0} us)",
        us(clear),
        us(sealed),
        us(sealed) - us(clear)
    );
    println!(
        "Noise NNpsk2 channel alone (headers, 2 messages, first record), both ends: {:.0} us",
        us(noise)
    );
}
