//! UDP heartbeats on one sleeve connection (Weave Net's timers, `router/sleeve.go`): sent every
//! [`FAST_HEARTBEAT`] until the peer first acknowledges one (the path works and the peer knows
//! our address), then every [`SLOW_HEARTBEAT`]; the connection fails after [`HEARTBEAT_TIMEOUT`]
//! without a heartbeat or acknowledgement from the peer. Sans-IO and time-injected.

use std::time::{Duration, Instant};

use crate::wire::sleeve::Control;

/// Interval until the first acknowledgement (Weave Net: 500 ms).
pub const FAST_HEARTBEAT: Duration = Duration::from_millis(500);
/// Interval once acknowledged (Weave Net: 10 s).
pub const SLOW_HEARTBEAT: Duration = Duration::from_secs(10);
/// Silence after which the connection fails (Weave Net: `MaxMissedHeartbeats` 6 × 10 s).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);

/// The heartbeat state of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeats {
    /// Ties heartbeats and acknowledgements to this connection: an old connection's late
    /// acknowledgement must not vouch for a new one.
    connection_id: u64,
    last_sent: Option<Instant>,
    /// When the peer last proved the UDP path (heartbeat or acknowledgement received).
    last_heard: Instant,
    acknowledged: bool,
}

impl Heartbeats {
    pub fn new(connection_id: u64, now: Instant) -> Self {
        Self {
            connection_id,
            last_sent: None,
            last_heard: now,
            acknowledged: false,
        }
    }

    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// The peer acknowledged one of our heartbeats on this connection.
    pub fn acknowledged(&self) -> bool {
        self.acknowledged
    }

    /// The heartbeat to send now, if one is due.
    pub fn poll(&mut self, now: Instant) -> Option<Control> {
        let interval = if self.acknowledged {
            SLOW_HEARTBEAT
        } else {
            FAST_HEARTBEAT
        };
        let due = self
            .last_sent
            .is_none_or(|sent| now.duration_since(sent) >= interval);
        due.then(|| {
            self.last_sent = Some(now);
            Control::Heartbeat {
                connection_id: self.connection_id,
            }
        })
    }

    /// The peer sent a heartbeat: it hears from us, or at least it is there.
    pub fn on_heartbeat(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// The peer acknowledged a heartbeat; true when it is the first for this connection.
    pub fn on_ack(&mut self, connection_id: u64, now: Instant) -> bool {
        if connection_id != self.connection_id {
            return false;
        }
        self.last_heard = now;
        let first = !self.acknowledged;
        self.acknowledged = true;
        first
    }

    /// No word from the peer for [`HEARTBEAT_TIMEOUT`].
    pub fn timed_out(&self, now: Instant) -> bool {
        now.duration_since(self.last_heard) >= HEARTBEAT_TIMEOUT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_until_acknowledged_then_slow() {
        let start = Instant::now();
        let mut beats = Heartbeats::new(7, start);
        assert_eq!(
            beats.poll(start),
            Some(Control::Heartbeat { connection_id: 7 })
        );
        assert_eq!(beats.poll(start + FAST_HEARTBEAT / 2), None);
        assert!(beats.poll(start + FAST_HEARTBEAT).is_some());
        assert!(beats.on_ack(7, start + FAST_HEARTBEAT));
        assert!(
            !beats.on_ack(7, start + FAST_HEARTBEAT),
            "only the first is first"
        );
        assert_eq!(beats.poll(start + FAST_HEARTBEAT * 3), None);
        assert!(
            beats
                .poll(start + FAST_HEARTBEAT + SLOW_HEARTBEAT)
                .is_some()
        );
    }

    #[test]
    fn another_connections_ack_proves_nothing() {
        let start = Instant::now();
        let mut beats = Heartbeats::new(7, start);
        assert!(!beats.on_ack(8, start));
        assert!(!beats.acknowledged());
        assert!(beats.timed_out(start + HEARTBEAT_TIMEOUT));
    }

    #[test]
    fn silence_for_the_timeout_fails_the_connection_and_any_word_resets_it() {
        let start = Instant::now();
        let mut beats = Heartbeats::new(1, start);
        let almost = start + HEARTBEAT_TIMEOUT - Duration::from_millis(1);
        assert!(!beats.timed_out(almost));
        beats.on_heartbeat(almost);
        assert!(!beats.timed_out(start + HEARTBEAT_TIMEOUT));
        assert!(beats.timed_out(almost + HEARTBEAT_TIMEOUT));
    }
}
