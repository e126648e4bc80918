//! Target addresses: normalising what an operator typed (`host`, `host:port`, `[v6]:port`) and
//! what gossip or a refusal named into one canonical `host:port` key, so that one peer's address
//! is one target however it was spelled.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest host name DNS allows (RFC 1035, without the trailing dot).
const MAX_HOST_NAME_LEN: usize = 253;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("invalid peer address {input:?}: {why}")]
    Invalid { input: String, why: &'static str },
}

/// Normalises `host[:port]` (IPv6 as `[addr]:port`) to `host:port`, adding `default_port`.
///
/// IP addresses are rewritten in their canonical form (so `[0::1]:99` and `[::1]:99` are one
/// target, and a direct `1.2.3.4` matches the discovered `1.2.3.4:6783`); a bare IPv6 address
/// without brackets takes the default port. Host names are kept as names (lower-cased, since DNS
/// ignores case) and resolved only when dialled.
pub fn normalise_target(input: &str, default_port: u16) -> Result<String, TargetError> {
    let invalid = |why| TargetError::Invalid {
        input: input.to_string(),
        why,
    };
    if input.is_empty() {
        return Err(invalid("empty address"));
    }
    if input.chars().any(char::is_whitespace) {
        return Err(invalid("contains whitespace"));
    }

    if let Some(rest) = input.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid("'[' without a closing ']'"))?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| invalid("not an IPv6 address inside '[...]'"))?;
        let port = match after {
            "" => default_port,
            _ => match after.strip_prefix(':') {
                Some(port) => parse_port(port).map_err(invalid)?,
                None => return Err(invalid("expected ':port' after ']'")),
            },
        };
        return Ok(SocketAddr::new(IpAddr::V6(ip), port).to_string());
    }

    if input.matches(':').count() > 1 {
        // Two or more colons can only be a bare IPv6 address; with a port it needs brackets,
        // because `fe80::1:99` is itself a valid address.
        let ip: Ipv6Addr = input
            .parse()
            .map_err(|_| invalid("too many ':' (write IPv6 addresses as [addr]:port)"))?;
        return Ok(SocketAddr::new(IpAddr::V6(ip), default_port).to_string());
    }

    let (host, port) = match input.split_once(':') {
        Some((host, port)) => (host, parse_port(port).map_err(invalid)?),
        None => (input, default_port),
    };
    if host.is_empty() {
        return Err(invalid("missing host"));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(SocketAddr::new(IpAddr::V4(ip), port).to_string());
    }
    if host.len() > MAX_HOST_NAME_LEN {
        return Err(invalid("host name longer than 253 characters"));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(invalid("invalid character in host name"));
    }
    Ok(format!("{}:{port}", host.to_ascii_lowercase()))
}

fn parse_port(text: &str) -> Result<u16, &'static str> {
    if text.is_empty() {
        return Err("missing port after ':'");
    }
    // `u16::from_str` would also take a leading '+'.
    if !text.chars().all(|c| c.is_ascii_digit()) {
        return Err("port is not a number");
    }
    match text.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be dialled"),
        Ok(port) => Ok(port),
        Err(_) => Err("port out of range (1-65535)"),
    }
}

/// The target string for an address learned from gossip or a hint; `None` for addresses that
/// cannot be dialled (unspecified IP, port 0), which a confused or stale peer may advertise.
pub(super) fn socket_target(addr: SocketAddr) -> Option<String> {
    if addr.port() == 0 || addr.ip().is_unspecified() {
        None
    } else {
        Some(addr.to_string())
    }
}
