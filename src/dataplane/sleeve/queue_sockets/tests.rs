//! The queue sockets over loopback: one mesh port for the group, send ports with each queue's
//! remainder, and every datagram delivered to the socket its source port names.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::*;
use crate::dataplane::sleeve::udp::RecvBatch;

const QUEUES: usize = 4;

fn loopback_group(count: usize) -> Vec<QueueSockets> {
    QueueSockets::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), count).unwrap()
}

fn port(socket: &SleeveSocket) -> u16 {
    socket.local_addr().unwrap().port()
}

#[test]
fn the_group_shares_the_mesh_port_and_each_queue_sends_with_its_remainder() {
    let group = loopback_group(QUEUES);
    let mesh_port = port(&group[0].mesh);
    for (queue, sockets) in group.iter().enumerate() {
        assert_eq!(port(&sockets.mesh), mesh_port);
        let send_port = port(&sockets.send);
        assert_eq!(
            send_port % MAX_TAP_QUEUES as u16,
            send_port_remainder(mesh_port, queue),
            "queue {queue} sends from {send_port}"
        );
        // Queue 0 sends from the mesh port itself; the others from ports of their own.
        assert_eq!(send_port == mesh_port, queue == 0, "queue {queue}");
    }
}

#[test]
fn every_datagram_reaches_the_socket_its_source_port_names() {
    let receivers = loopback_group(QUEUES);
    let to = receivers[0].mesh.local_addr().unwrap();
    // A sending peer's queues (two of them) and 16 other senders on ports the kernel picks.
    let mut senders: Vec<SleeveSocket> = loopback_group(2)
        .into_iter()
        .map(|queue| queue.send)
        .collect();
    senders.extend(
        (0..16).map(|_| SleeveSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap()),
    );
    for (index, sender) in senders.iter().enumerate() {
        for _ in 0..3 {
            sender.send_control(to, &[index as u8]).unwrap();
        }
    }
    let expected = 3 * senders.len();
    let mut received = 0;
    let mut batch = RecvBatch::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while received < expected && Instant::now() < deadline {
        for (socket, queue) in receivers.iter().enumerate() {
            if queue.mesh.recv_batch(&mut batch).unwrap() == 0 {
                continue;
            }
            for (from, datagram) in batch.datagrams() {
                received += 1;
                let from_port = from.unwrap().port();
                assert_eq!(port(&senders[usize::from(datagram[0])]), from_port);
                assert_eq!(
                    usize::from(from_port) % QUEUES,
                    socket,
                    "a datagram from port {from_port}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(received, expected);
}

#[test]
fn queue_counts_outside_one_to_the_maximum_are_refused() {
    for count in [0, MAX_TAP_QUEUES + 1] {
        let refused = QueueSockets::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), count);
        assert!(
            matches!(refused, Err(DataplaneError::Invalid { .. })),
            "{count}: {refused:?}"
        );
    }
}
