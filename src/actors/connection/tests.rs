//! Link actors on real loopback sockets, with recording stand-ins for gossip and the connection
//! maker: a link that panics reports its end and stops alone.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::*;
use crate::actors::gossip::InjectPanic;
use crate::actors::gossip::messages::{LinkClosed, LinkEstablished, Received, RegisterLink};
use crate::actors::listener::ConnectionLimiter;
use crate::actors::supervisor::Fixed;

/// Records what links tell gossip.
#[derive(Default)]
struct RecordingGossip {
    registered: Vec<(LinkId, PeerName)>,
    conn_uids: Vec<u64>,
    established: Vec<LinkId>,
    closed: Vec<LinkId>,
}

impl Actor for RecordingGossip {
    type Context = Context<Self>;
}

impl Handler<RegisterLink> for RecordingGossip {
    type Result = Result<(), ClosingReason>;
    fn handle(&mut self, msg: RegisterLink, _: &mut Context<Self>) -> Self::Result {
        self.registered.push((msg.link.id, msg.link.remote));
        self.conn_uids.push(msg.link.conn_uid);
        Ok(())
    }
}

impl Handler<LinkEstablished> for RecordingGossip {
    type Result = Result<(), crate::actors::gossip::state::GossipError>;
    fn handle(&mut self, msg: LinkEstablished, _: &mut Context<Self>) -> Self::Result {
        self.established.push(msg.0);
        Ok(())
    }
}

impl Handler<LinkClosed> for RecordingGossip {
    type Result = ();
    fn handle(&mut self, msg: LinkClosed, _: &mut Context<Self>) {
        self.closed.push(msg.0);
    }
}

impl Handler<Received> for RecordingGossip {
    type Result = Result<(), crate::actors::gossip::state::GossipError>;
    fn handle(&mut self, _: Received, _: &mut Context<Self>) -> Self::Result {
        Ok(())
    }
}

#[derive(Message)]
#[rtype(result = "(Vec<(LinkId, PeerName)>, Vec<LinkId>, Vec<LinkId>)")]
struct Recorded;

impl Handler<Recorded> for RecordingGossip {
    type Result = MessageResult<Recorded>;
    fn handle(&mut self, _: Recorded, _: &mut Context<Self>) -> Self::Result {
        MessageResult((
            self.registered.clone(),
            self.established.clone(),
            self.closed.clone(),
        ))
    }
}

#[derive(Message)]
#[rtype(result = "Vec<u64>")]
struct ConnUids;

impl Handler<ConnUids> for RecordingGossip {
    type Result = MessageResult<ConnUids>;
    fn handle(&mut self, _: ConnUids, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.conn_uids.clone())
    }
}

struct RecordingGossipSource(Addr<RecordingGossip>);

impl GossipSource for RecordingGossipSource {
    fn current(&self) -> GossipPort {
        GossipPort {
            register: self.0.clone().recipient(),
            established: self.0.clone().recipient(),
            closed: self.0.clone().recipient(),
            received: self.0.clone().recipient(),
            generation: 0,
        }
    }
}

/// Records what links tell the connection maker.
#[derive(Default)]
struct RecordingMaker {
    events: Vec<LinkEvent>,
}

impl Actor for RecordingMaker {
    type Context = Context<Self>;
}

impl Handler<LinkEvent> for RecordingMaker {
    type Result = ();
    fn handle(&mut self, msg: LinkEvent, _: &mut Context<Self>) {
        self.events.push(msg);
    }
}

#[derive(Message)]
#[rtype(result = "Vec<LinkEvent>")]
struct Events;

impl Handler<Events> for RecordingMaker {
    type Result = MessageResult<Events>;
    fn handle(&mut self, _: Events, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.events.clone())
    }
}

fn context(
    name: u64,
    gossip: &Addr<RecordingGossip>,
    maker: &Addr<RecordingMaker>,
) -> Arc<LinkContext> {
    keyed_context(name, gossip, maker, None)
}

/// A context whose mesh has the key `mesh_key` (none: no password).
fn keyed_context(
    name: u64,
    gossip: &Addr<RecordingGossip>,
    maker: &Addr<RecordingMaker>,
    mesh_key: Option<Arc<MeshKey>>,
) -> Arc<LinkContext> {
    let (_, hints) = watch::channel(Vec::new());
    Arc::new(LinkContext {
        identity: LocalIdentity {
            name: PeerName::from_u64(name).unwrap(),
            nickname: format!("peer{name}"),
            uid: PeerUid(name * 1000),
            listen_port: 6783,
            overlays: Vec::new(),
        },
        timers: LinkTimers {
            handshake_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_millis(200),
            read_timeout: Duration::from_secs(5),
            sleeve_rekey_interval: Duration::from_secs(120),
        },
        gossip: Arc::new(RecordingGossipSource(gossip.clone())),
        maker: Arc::new(Fixed(maker.clone().recipient())),
        refusal_hints: hints,
        conn_limit: 0,
        sleeve_keys: Arc::new(super::NoSleeve),
        mesh_key,
        shutdown: tokio_util::sync::CancellationToken::new(),
    })
}

/// Two link actors joined by a loopback TCP connection: (outbound, inbound).
async fn link_pair(
    dialer: Arc<LinkContext>,
    acceptor: Arc<LinkContext>,
) -> (Addr<Connection>, Addr<Connection>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (dialled, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let dialled = dialled.unwrap();
    let (accepted, from) = accepted.unwrap();
    let limiter = ConnectionLimiter::new(0);
    let outbound = Connection::new(
        dialled,
        addr,
        Direction::Outbound {
            target: addr.to_string(),
        },
        LinkSlot::Held(limiter.try_acquire().unwrap()),
        dialer,
    )
    .start();
    let inbound = Connection::new(
        accepted,
        from,
        Direction::Inbound,
        LinkSlot::Held(limiter.try_acquire().unwrap()),
        acceptor,
    )
    .start();
    (outbound, inbound)
}

async fn wait_for(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[actix_rt::test]
async fn a_panicking_link_reports_its_end_and_stops_alone() {
    let gossip_a = RecordingGossip::default().start();
    let gossip_b = RecordingGossip::default().start();
    let maker = RecordingMaker::default().start();
    let a = context(1, &gossip_a, &maker);
    let b = context(2, &gossip_b, &maker);
    let (doomed, doomed_peer) = link_pair(a.clone(), b.clone()).await;
    let (healthy, _) = link_pair(a, b).await;
    assert!(
        wait_for(async || gossip_a.send(Recorded).await.unwrap().1.len() == 2).await,
        "both links of A established"
    );

    let _ = doomed.send(InjectPanic).await;
    assert!(!doomed.connected(), "the panicking link is gone");
    let (registered, _, closed) = gossip_a.send(Recorded).await.unwrap();
    let doomed_id = registered[0].0;
    assert!(
        wait_for(async || gossip_a.send(Recorded).await.unwrap().2 == vec![doomed_id]).await,
        "gossip was told the link ended (closed so far: {closed:?})"
    );
    assert!(
        wait_for(async || {
            maker.send(Events).await.unwrap().iter().any(|event| {
                matches!(
                    event,
                    LinkEvent::Ended {
                        reason: ClosingReason::Panicked,
                        ..
                    }
                )
            })
        })
        .await,
        "the connection maker was told, with the reason"
    );
    // The far end sees its socket close; the other link keeps running.
    assert!(wait_for(async || !doomed_peer.connected()).await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(healthy.connected(), "the other link is untouched");
    assert_eq!(gossip_a.send(Recorded).await.unwrap().2, vec![doomed_id]);
}

async fn ended_with(maker: &Addr<RecordingMaker>, expected: ClosingReason) -> bool {
    wait_for(async || {
        maker
            .send(Events)
            .await
            .unwrap()
            .iter()
            .any(|event| matches!(event, LinkEvent::Ended { reason, .. } if *reason == expected))
    })
    .await
}

#[actix_rt::test]
async fn routers_sharing_a_process_shut_down_independently() {
    let (gossip_a, gossip_b, gossip_c) = (
        RecordingGossip::default().start(),
        RecordingGossip::default().start(),
        RecordingGossip::default().start(),
    );
    let (maker_a, maker_b, maker_c) = (
        RecordingMaker::default().start(),
        RecordingMaker::default().start(),
        RecordingMaker::default().start(),
    );
    let a = context(1, &gossip_a, &maker_a);
    let b = context(2, &gossip_b, &maker_b);
    let c = context(3, &gossip_c, &maker_c);
    let (from_a, _) = link_pair(a.clone(), c.clone()).await;
    let (from_b, _) = link_pair(b.clone(), c).await;
    for gossip in [&gossip_a, &gossip_b] {
        assert!(wait_for(async || gossip.send(Recorded).await.unwrap().1.len() == 1).await);
    }

    a.shutdown.cancel();
    assert!(
        ended_with(&maker_a, ClosingReason::ShuttingDown).await,
        "A's link closed as A stopped"
    );
    assert!(wait_for(async || !from_a.connected()).await);
    assert!(from_b.connected(), "B's link is untouched");

    // A link of B that dies now is a panic, not taken for A's shutdown.
    let _ = from_b.send(InjectPanic).await;
    assert!(
        ended_with(&maker_b, ClosingReason::Panicked).await,
        "{:?}",
        maker_b.send(Events).await.unwrap()
    );
    assert!(!b.shutdown.is_cancelled());
}

/// An inbound link actor on a fresh listener, and the address to dial it at.
async fn accepting(ctx: Arc<LinkContext>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = actix_rt::spawn(async move {
        let (accepted, from) = listener.accept().await.unwrap();
        let limiter = ConnectionLimiter::new(0);
        Connection::new(
            accepted,
            from,
            Direction::Inbound,
            LinkSlot::Held(limiter.try_acquire().unwrap()),
            ctx,
        )
        .start();
    });
    (addr, accept)
}

#[actix_rt::test]
async fn a_dialler_that_copies_our_contribution_cannot_choose_the_link_id() {
    let gossip = RecordingGossip::default().start();
    let maker = RecordingMaker::default().start();
    let (addr, accept) = accepting(context(1, &gossip, &maker)).await;
    // Link id 0 wins every tie-break: a copycat that gets it evicts the real link to its peer.
    let _stream = copycat::dial_for_link_id_zero(addr, PeerName::from_u64(2).unwrap()).await;
    accept.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let conn_uids = gossip.send(ConnUids).await.unwrap();
    assert!(conn_uids.is_empty(), "link ids registered: {conn_uids:?}");
}

#[actix_rt::test]
async fn an_acceptor_that_reflects_our_commitment_cannot_choose_the_link_id() {
    let gossip = RecordingGossip::default().start();
    let maker = RecordingMaker::default().start();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let copycat = actix_rt::spawn(copycat::accept_for_link_id_zero(
        listener,
        PeerName::from_u64(2).unwrap(),
    ));
    let limiter = ConnectionLimiter::new(0);
    let dialled = TcpStream::connect(addr).await.unwrap();
    Connection::new(
        dialled,
        addr,
        Direction::Outbound {
            target: addr.to_string(),
        },
        LinkSlot::Held(limiter.try_acquire().unwrap()),
        context(1, &gossip, &maker),
    )
    .start();
    let _stream = copycat.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let conn_uids = gossip.send(ConnUids).await.unwrap();
    assert!(conn_uids.is_empty(), "link ids registered: {conn_uids:?}");
    let ended = maker.send(Events).await.unwrap();
    assert!(
        matches!(&ended[..], [LinkEvent::Ended { reason: ClosingReason::Protocol(why), .. }] if why.contains("commitment")),
        "{ended:?}"
    );
}

#[actix_rt::test]
async fn a_peer_whose_nickname_is_unsafe_to_log_is_turned_away() {
    for (nickname, admitted) in [("fine-name", true), ("two\nlines", false)] {
        let gossip = RecordingGossip::default().start();
        let maker = RecordingMaker::default().start();
        let (addr, accept) = accepting(context(1, &gossip, &maker)).await;
        let name = PeerName::from_u64(2).unwrap();
        let _stream = copycat::dial_honestly(addr, name, nickname).await;
        accept.await.unwrap();
        let registered = async || !gossip.send(Recorded).await.unwrap().0.is_empty();
        if admitted {
            assert!(wait_for(registered).await, "{nickname:?} admitted");
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(!registered().await, "{nickname:?} turned away");
        }
    }
}

#[actix_rt::test]
async fn sealed_links_establish_and_a_full_sealed_mesh_refuses_with_its_header_alone() {
    use tokio::io::AsyncReadExt;

    let gossip = RecordingGossip::default().start();
    let maker = RecordingMaker::default().start();
    let key = Some(Arc::new(MeshKey::from_bytes([9; 32])));
    let a = keyed_context(1, &gossip, &maker, key.clone());
    let b = keyed_context(2, &gossip, &maker, key);
    let _pair = link_pair(a.clone(), b).await;
    assert!(
        wait_for(async || gossip.send(Recorded).await.unwrap().1.len() == 2).await,
        "both ends of the sealed link established"
    );

    for ctx in [a, context(1, &gossip, &maker)] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (dialled, accepted) = tokio::join!(
            TcpStream::connect(listener.local_addr().unwrap()),
            listener.accept()
        );
        let refusal = crate::wire::Refusal {
            reason: crate::wire::RefusalReason::ConnectionLimit { limit: 1 },
            alternatives: vec!["192.0.2.7:6783".parse().unwrap()],
        };
        let sealed = ctx.mesh_key.is_some();
        refuse(accepted.unwrap().0, refusal, ctx).await;
        let mut heard = Vec::new();
        dialled.unwrap().read_to_end(&mut heard).await.unwrap();
        if sealed {
            assert_eq!(heard, b"WEFT\x02\x02", "nothing but the header");
        } else {
            assert_eq!(&heard[..4], b"weft");
            assert!(heard.len() > 10, "the refusal with its alternative follows");
        }
    }
}

/// Hostile peers speaking the handshake by hand, each trying for link id 0.
mod copycat {
    use std::net::SocketAddr;

    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use crate::topology::{PeerName, PeerUid};
    use crate::wire::{
        Features, HEADER_LEN, Hello, LinkCommitment, LinkNonce, ProtocolHeader, Reveal,
        decode_message, encode_frame, encode_message,
    };

    async fn read_frame<T: serde::de::DeserializeOwned>(stream: &mut TcpStream) -> Option<T> {
        let len = stream.read_u32().await.ok()? as usize;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.ok()?;
        decode_message("frame", &body).ok()
    }

    async fn read_hello(stream: &mut TcpStream) -> Features {
        let mut header = [0u8; HEADER_LEN];
        stream.read_exact(&mut header).await.unwrap();
        match read_frame(stream).await {
            Some(Hello::Features(theirs)) => theirs,
            other => panic!("no features: {other:?}"),
        }
    }

    async fn send_hello(stream: &mut TcpStream, name: PeerName, commit: LinkCommitment) {
        send_hello_as(stream, name, "copycat", commit).await;
    }

    async fn send_hello_as(
        stream: &mut TcpStream,
        name: PeerName,
        nickname: &str,
        commit: LinkCommitment,
    ) {
        let ours = Features {
            name,
            nickname: nickname.into(),
            uid: PeerUid(666),
            conn_commit: commit,
            overlays: Vec::new(),
            listen_port: 6783,
        };
        let mut out = BytesMut::new();
        out.extend_from_slice(&ProtocolHeader::OURS.encode());
        encode_frame(
            encode_message("hello", &Hello::Features(ours)).unwrap(),
            &mut out,
        )
        .unwrap();
        stream.write_all(&out).await.unwrap();
    }

    async fn send_reveal(stream: &mut TcpStream, nonce: LinkNonce) {
        let mut out = BytesMut::new();
        encode_frame(
            encode_message("reveal", &Reveal { nonce }).unwrap(),
            &mut out,
        )
        .unwrap();
        let _ = stream.write_all(&out).await;
    }

    /// Plays the dialler by the rules, under `nickname`.
    pub async fn dial_honestly(addr: SocketAddr, name: PeerName, nickname: &str) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let nonce = LinkNonce::random();
        send_hello_as(&mut stream, name, nickname, nonce.commitment()).await;
        let _theirs = read_hello(&mut stream).await;
        send_reveal(&mut stream, nonce).await;
        stream
    }

    /// Commits to a nonce of its own, then reveals the acceptor's instead.
    pub async fn dial_for_link_id_zero(addr: SocketAddr, name: PeerName) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        send_hello(&mut stream, name, LinkNonce::random().commitment()).await;
        let _theirs = read_hello(&mut stream).await;
        let Some(Reveal { nonce }) = read_frame(&mut stream).await else {
            panic!("the acceptor revealed nothing");
        };
        send_reveal(&mut stream, nonce).await;
        stream
    }

    /// Sends the dialler's own commitment back, hoping to open it with the dialler's nonce.
    pub async fn accept_for_link_id_zero(listener: TcpListener, name: PeerName) -> TcpStream {
        let (mut stream, _) = listener.accept().await.unwrap();
        let theirs = read_hello(&mut stream).await;
        send_hello(&mut stream, name, theirs.conn_commit).await;
        if let Some(Reveal { nonce }) = read_frame(&mut stream).await {
            send_reveal(&mut stream, nonce).await;
        }
        stream
    }
}
