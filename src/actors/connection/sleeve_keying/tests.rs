use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;
use crate::topology::PeerName;
use crate::wire::sleeve::seal::{OpeningKeys, SEAL_HEADROOM, SEAL_TAG_LEN, SealingKey};
use crate::wire::sleeve::{SLEEVE_VERSION, encode_datagram_header};

const REKEY: Duration = Duration::from_secs(10);

/// One end: its key agreement and a model of its sleeve's keys.
struct End {
    keying: SleeveKeying,
    sealer: Option<SealingKey>,
    opener: OpeningKeys,
    /// Messages on their way to the other end, in the channel's order.
    outbox: VecDeque<ProtocolMsg>,
}

impl End {
    fn new(dialler: bool) -> Self {
        let keying = SleeveKeying::new(dialler, REKEY);
        let opener = OpeningKeys::new(keying.receiving());
        Self {
            keying,
            sealer: None,
            opener,
            outbox: VecDeque::new(),
        }
    }

    /// Carries out outputs as the link actor does: installs at once, reports, sends.
    fn carry_out(&mut self, outputs: Vec<KeyingOutput>, now: Instant) {
        for output in outputs {
            match output {
                KeyingOutput::Send(msg) => self.outbox.push_back(msg),
                KeyingOutput::Install {
                    role,
                    direction,
                    key,
                } => {
                    match role {
                        KeyRole::Opening => self.opener.install(&key).unwrap(),
                        KeyRole::Sealing => {
                            self.sealer = Some(SealingKey::new(&key, direction, now))
                        }
                    }
                    let more = self.keying.installed(role, key.epoch, now);
                    self.carry_out(more, now);
                }
            }
        }
    }

    /// A sealed datagram carrying `n`, when this end has a sealing key.
    fn seal(&mut self, n: u32) -> Option<Vec<u8>> {
        let sealer = self.sealer.as_mut()?;
        let mut buffer = vec![0u8; SEAL_HEADROOM];
        let mut plain = Vec::new();
        encode_datagram_header(PeerName::from_u64(7).unwrap(), &mut plain);
        plain.extend_from_slice(&n.to_be_bytes());
        buffer.extend_from_slice(&plain);
        buffer.resize(buffer.len() + SEAL_TAG_LEN, 0);
        sealer.seal_in_place(&mut buffer).unwrap();
        Some(buffer)
    }
}

/// Delivers every queued message of `from` to `to`, one at a time.
fn deliver(from: &mut End, to: &mut End, now: Instant) {
    while let Some(msg) = from.outbox.pop_front() {
        let outputs = to.keying.on_message(&msg).unwrap();
        to.carry_out(outputs, now);
    }
}

#[test]
fn a_key_is_sealed_with_only_after_the_receiver_installed_it() {
    let now = Instant::now();
    let (mut a, mut b) = (End::new(true), End::new(false));
    let started = a.keying.start().unwrap();
    a.carry_out(started, now);
    assert!(a.sealer.is_none(), "nothing seals before the ack");
    assert!(matches!(a.outbox[0], ProtocolMsg::SleeveKey { .. }));
    deliver(&mut a, &mut b, now);
    assert_eq!(b.opener.current_epoch(), Some(0));
    assert_eq!(b.keying.opening_epoch(), Some(0));
    assert_eq!(b.outbox, [ProtocolMsg::SleeveKeyAck { epoch: 0 }]);
    assert!(a.seal(1).is_none());
    deliver(&mut b, &mut a, now);
    assert_eq!(a.keying.sealing_epoch(), Some(0));
    let mut datagram = a.seal(1).unwrap();
    let opened = b.opener.open(&mut datagram).unwrap();
    assert_eq!(opened.epoch, 0);
    assert_eq!(opened.datagram[6], SLEEVE_VERSION << 4);
    assert_eq!(a.keying.next_deadline(), Some(now + REKEY));
}

#[test]
fn the_directions_are_the_links_ends() {
    let (a, b) = (End::new(true), End::new(false));
    assert_eq!(a.keying.sending, Direction::FromDialler);
    assert_eq!(a.keying.receiving(), Direction::FromAcceptor);
    assert_eq!(b.keying.sending, Direction::FromAcceptor);
}

#[test]
fn rekeying_while_traffic_flows_loses_nothing() {
    let start = Instant::now();
    let (mut a, mut b) = (End::new(true), End::new(false));
    for end in [&mut a, &mut b] {
        let outputs = end.keying.start().unwrap();
        end.carry_out(outputs, start);
    }
    // Datagrams from a to b in flight, each with the step it arrives at: UDP is slower or
    // faster than the channel, and reorders.
    let mut in_flight: Vec<(u32, Vec<u8>)> = Vec::new();
    let (mut sent, mut opened) = (0u32, 0u32);
    let step = Duration::from_millis(250);
    for tick in 0..1200u32 {
        let now = start + step * tick;
        // The channel delivers one way or the other every other step, so keys and acks lag.
        if tick % 2 == 0 {
            deliver(&mut a, &mut b, now);
        } else {
            deliver(&mut b, &mut a, now);
        }
        for end in [&mut a, &mut b] {
            let outputs = end.keying.poll(now).unwrap();
            end.carry_out(outputs, now);
        }
        for n in 0..3 {
            if let Some(datagram) = a.seal(tick * 3 + n) {
                sent += 1;
                // Up to 7 steps late (under 2 s), in a pattern that reorders.
                in_flight.push((tick + (tick * 7 + n) % 8, datagram));
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = in_flight.into_iter().partition(|(at, _)| *at <= tick);
        in_flight = later;
        for (_, mut datagram) in due.into_iter().rev() {
            b.opener.open(&mut datagram).expect("every datagram opens");
            opened += 1;
        }
    }
    assert!(sent > 3000, "traffic flowed from the first seconds: {sent}");
    assert_eq!(opened + in_flight.len() as u32, sent);
    let epochs = a.keying.sealing_epoch().unwrap();
    assert!(epochs >= 25, "rekeyed every 10 s for 300 s: epoch {epochs}");
    assert_eq!(b.keying.sealing_epoch(), Some(epochs));
}

#[test]
fn a_stale_or_unoffered_key_message_is_a_protocol_error() {
    let now = Instant::now();
    let (mut a, mut b) = (End::new(true), End::new(false));
    let outputs = a.keying.start().unwrap();
    a.carry_out(outputs, now);
    let first = a.outbox[0].clone();
    deliver(&mut a, &mut b, now);
    assert!(matches!(
        b.keying.on_message(&first),
        Err(ClosingReason::Protocol(_))
    ));
    assert!(matches!(
        a.keying.on_message(&ProtocolMsg::SleeveKeyAck { epoch: 5 }),
        Err(ClosingReason::Protocol(_))
    ));
    let garbage = ProtocolMsg::SleeveKey {
        key: SleeveKeyBytes::new(b"not a key"),
    };
    assert!(matches!(
        b.keying.on_message(&garbage),
        Err(ClosingReason::Protocol(_))
    ));
}

#[test]
fn no_rekey_is_offered_while_one_is_pending() {
    let now = Instant::now();
    let mut a = End::new(true);
    let mut b = End::new(false);
    let outputs = a.keying.start().unwrap();
    a.carry_out(outputs, now);
    deliver(&mut a, &mut b, now);
    deliver(&mut b, &mut a, now);
    let later = now + REKEY;
    let outputs = a.keying.poll(later).unwrap();
    assert_eq!(outputs.len(), 1);
    a.carry_out(outputs, later);
    assert_eq!(a.keying.next_deadline(), None);
    assert!(a.keying.poll(later + REKEY * 5).unwrap().is_empty());
    // The old key seals until the new one is acknowledged.
    assert_eq!(a.keying.sealing_epoch(), Some(0));
    deliver(&mut a, &mut b, later);
    deliver(&mut b, &mut a, later);
    assert_eq!(a.keying.sealing_epoch(), Some(1));
    assert_eq!(b.opener.previous_epoch(), Some(0));
}
