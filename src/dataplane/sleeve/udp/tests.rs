//! The batched socket over loopback only: GSO trains and plain datagrams out in one `sendmmsg`,
//! back in through `recvmmsg` (GRO trains split again), refused messages skipped and reported.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::*;

fn loopback_socket() -> SleeveSocket {
    SleeveSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap()
}

/// Receives until `count` datagrams arrived (at most 5 s).
fn receive(socket: &SleeveSocket, count: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut batch = RecvBatch::new();
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.len() < count && Instant::now() < deadline {
        if socket.recv_batch(&mut batch).unwrap() == 0 {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        for (from, datagram) in batch.datagrams() {
            received.push((from.unwrap(), datagram.to_vec()));
        }
    }
    received
}

#[test]
fn gso_trains_and_plain_datagrams_arrive_as_the_datagrams_they_were() {
    let (sender, receiver) = (loopback_socket(), loopback_socket());
    let to = receiver.local_addr().unwrap();
    let mut queue = SendQueue::new();
    queue.push(to, b"first");
    // Ten 1000-byte datagrams and a 500-byte one, each filled with its index.
    queue
        .push_segments::<()>(to, 1000, |out| {
            for index in 0..11u8 {
                let len = if index == 10 { 500 } else { 1000 };
                out.extend(std::iter::repeat_n(index, len));
            }
            Ok(())
        })
        .unwrap();
    queue.push(to, b"last");
    assert_eq!(queue.len(), 3);
    let report = sender.send_queue(&mut queue);
    assert_eq!(
        report,
        SendReport {
            datagrams: 13,
            bytes: 5 + 10_500 + 4,
            failed: 0
        }
    );
    assert!(queue.is_empty());
    let received = receive(&receiver, 13);
    let from = sender.local_addr().unwrap();
    assert!(received.iter().all(|(addr, _)| *addr == from));
    let datagrams: Vec<Vec<u8>> = received.into_iter().map(|(_, d)| d).collect();
    assert_eq!(datagrams.len(), 13);
    assert_eq!(datagrams[0], b"first");
    for index in 0..11u8 {
        let datagram = &datagrams[1 + usize::from(index)];
        assert_eq!(datagram.len(), if index == 10 { 500 } else { 1000 });
        assert!(datagram.iter().all(|&b| b == index));
    }
    assert_eq!(datagrams[12], b"last");
}

#[test]
fn long_trains_are_cut_to_the_gso_limits() {
    let mut queue = SendQueue::new();
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
    // 100 datagrams of 1472 bytes: 44 fit one message (65507 / 1472), so three messages.
    queue
        .push_segments::<()>(to, 1472, |out| {
            out.resize(100 * 1472, 0);
            Ok(())
        })
        .unwrap();
    assert_eq!(queue.len(), 3);
    let counts: Vec<usize> = queue.messages.iter().map(OutMessage::datagrams).collect();
    assert_eq!(counts, vec![44, 44, 12]);
    assert!(queue.messages.iter().all(|m| m.len <= MAX_GSO_MESSAGE_LEN));
    // A failing writer queues nothing.
    assert_eq!(
        queue.push_segments(to, 10, |out| {
            out.push(1);
            Err("no")
        }),
        Err("no")
    );
    assert_eq!((queue.len(), queue.bytes()), (3, 100 * 1472));
}

#[test]
fn oversize_datagrams_fail_with_emsgsize_and_are_skipped() {
    let (sender, receiver) = (loopback_socket(), loopback_socket());
    let to = receiver.local_addr().unwrap();
    let too_long = vec![0u8; MAX_GSO_MESSAGE_LEN + 1];
    let error = sender.send_control(to, &too_long).unwrap_err();
    assert!(is_message_too_long(&error), "{error}");
    sender.send_control(to, b"probe").unwrap();

    let mut queue = SendQueue::new();
    queue.push(to, b"one");
    queue.push(to, &too_long);
    queue.push(to, b"two");
    let report = sender.send_queue(&mut queue);
    assert_eq!((report.datagrams, report.failed), (2, 1));
    let received: Vec<Vec<u8>> = receive(&receiver, 3).into_iter().map(|(_, d)| d).collect();
    assert_eq!(
        received,
        vec![b"probe".to_vec(), b"one".to_vec(), b"two".to_vec()]
    );
}
