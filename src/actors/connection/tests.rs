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
        },
        gossip: Arc::new(RecordingGossipSource(gossip.clone())),
        maker: Arc::new(Fixed(maker.clone().recipient())),
        refusal_hints: hints,
        conn_limit: 0,
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
