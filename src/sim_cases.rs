//! How many cases the deterministic simulations run: their default, or `WEFT_SIM_CASES` from the
//! environment to run many more (one knob for the gossip, Paxos and IPAM simulations).

/// The simulation case count: `WEFT_SIM_CASES` when set to a number, else `default`.
pub fn sim_cases(default: u32) -> u32 {
    std::env::var("WEFT_SIM_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}
