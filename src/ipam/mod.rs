//! IP address management: pure logic.

pub mod paxos;
