//! What a settled simulated mesh must satisfy: converged topologies, routes that reach every
//! peer of a component, discovery of every unlinked peer, and exactly-once delivery of channel
//! gossip.

use super::*;

impl Mesh {
    /// Within every component, all peers hold the same records: exactly the component's, listing
    /// exactly the open links, all established; and every peer's unicast routes lead to every
    /// other peer of the component.
    pub(super) fn check_converged(&mut self) -> Result<(), String> {
        for component in self.components() {
            let first = component[0];
            let reference = self.topology_summary(first);
            let known: Vec<usize> = reference.keys().map(|&name| peer_index(name)).collect();
            if known != component {
                return Err(format!(
                    "peer {first} knows {known:?}, its component is {component:?}"
                ));
            }
            for (&name, (_, _, connections)) in &reference {
                let peer = peer_index(name);
                let listed: Vec<usize> = connections.keys().map(|&n| peer_index(n)).collect();
                let linked: Vec<usize> = component
                    .iter()
                    .copied()
                    .filter(|&other| self.is_open(peer, other))
                    .collect();
                if listed != linked || connections.values().any(|c| !c.established) {
                    return Err(format!(
                        "peer {peer}'s record as peer {first} has it lists {connections:?}, \
                         its links go to {linked:?}"
                    ));
                }
            }
            for &peer in &component {
                let summary = self.topology_summary(peer);
                if summary != reference {
                    return Err(format!(
                        "peers {first} and {peer} disagree:\n{reference:?}\n{summary:?}"
                    ));
                }
                self.check_unicast_routes(peer, &component)?;
            }
        }
        Ok(())
    }

    /// Following `routes().unicast` hop by hop from `from` reaches every other peer of its
    /// component over open links, without loops.
    pub(super) fn check_unicast_routes(
        &mut self,
        from: usize,
        component: &[usize],
    ) -> Result<(), String> {
        let destinations: Vec<usize> = self.states[from]
            .routes()
            .unicast
            .keys()
            .map(|&name| peer_index(name))
            .collect();
        let others: Vec<usize> = component
            .iter()
            .copied()
            .filter(|&peer| peer != from)
            .collect();
        if destinations != others {
            return Err(format!(
                "peer {from} has routes to {destinations:?}, expected {others:?}"
            ));
        }
        for &dest in &others {
            let mut at = from;
            let mut hops = 0;
            while at != dest {
                let next = self.states[at]
                    .routes()
                    .unicast(peer_name(dest))
                    .map(peer_index)
                    .ok_or_else(|| format!("peer {at} has no route to {dest}"))?;
                if !self.is_open(at, next) {
                    return Err(format!("peer {at} routes {dest} via non-neighbour {next}"));
                }
                at = next;
                hops += 1;
                if hops >= component.len() {
                    return Err(format!("the route from {from} to {dest} loops"));
                }
            }
        }
        Ok(())
    }

    /// Every peer discovers exactly the peers of its component it is not linked with, at the IP
    /// they connect from (they all listen on 0.0.0.0) and their mesh port.
    pub(super) fn check_discovery(&self) -> Result<(), String> {
        for component in self.components() {
            for &peer in &component {
                let expected: Vec<(PeerName, SocketAddr)> = component
                    .iter()
                    .copied()
                    .filter(|&other| other != peer && !self.is_open(peer, other))
                    .map(|other| {
                        let addr = SocketAddr::new(peer_ip(other), MESH_PORT);
                        (peer_name(other), addr)
                    })
                    .collect();
                let discovered = self.states[peer].discovered_targets();
                if discovered != expected {
                    return Err(format!(
                        "peer {peer} discovered {discovered:?}, expected {expected:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Carries out `effects` of a send at `source`, delivers everything it causes and returns the
    /// deliveries, sorted.
    fn deliveries_of(&mut self, source: usize, effects: Vec<Effect>) -> Vec<Delivery> {
        self.delivered.clear();
        self.apply(source, effects);
        self.deliver_all();
        let mut delivered = std::mem::take(&mut self.delivered);
        delivered.sort();
        delivered
    }

    /// A broadcast from any peer is delivered exactly once at every other peer of its component
    /// and nowhere else.
    pub(super) fn check_broadcasts(&mut self) -> Result<(), String> {
        for source in 0..self.states.len() {
            let payload = vec![source as u8];
            let effects = self.states[source].send_broadcast(TEST_CHANNEL, payload.clone());
            let delivered = self.deliveries_of(source, effects);
            let expected: Vec<Delivery> = self
                .component_of(source)
                .into_iter()
                .filter(|&peer| peer != source)
                .map(|at| Delivery {
                    at,
                    source: peer_name(source),
                    payload: payload.clone(),
                })
                .collect();
            if delivered != expected {
                return Err(format!(
                    "broadcast from {source} delivered {delivered:?}, expected {expected:?}"
                ));
            }
        }
        Ok(())
    }

    /// A unicast between any two peers of a component is delivered once, at its destination.
    pub(super) fn check_unicasts(&mut self) -> Result<(), String> {
        for component in self.components() {
            for &source in &component {
                for &dest in &component {
                    if dest == source {
                        continue;
                    }
                    let payload = vec![source as u8, dest as u8];
                    let effects = self.states[source].send_unicast(
                        TEST_CHANNEL,
                        peer_name(dest),
                        payload.clone(),
                    );
                    let delivered = self.deliveries_of(source, effects);
                    let expected = vec![Delivery {
                        at: dest,
                        source: peer_name(source),
                        payload,
                    }];
                    if delivered != expected {
                        return Err(format!(
                            "unicast from {source} to {dest} delivered {delivered:?}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
