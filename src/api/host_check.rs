//! Keeps web pages off the control API. A page open in a browser on the node can send requests
//! to 127.0.0.1:6784: cross-site (its `Origin` is the page's) or, after rebinding its own DNS name
//! to 127.0.0.1, as if same-site (its `Host` is the page's name). The API answers only requests
//! whose `Host` is its own address and whose `Origin`, if any, is too; clients that are not
//! browsers (the CLI, the CNI plugin, curl) send no `Origin` and the address they dialled as
//! `Host`, and pass.
//!
//! Bound to a specific address, `Host` must be that address and port (or `localhost:port` on
//! loopback). Bound to every address (`--http-addr 0.0.0.0:6784`), the API is reachable at any
//! of the node's addresses, which come and go at run time, so any IP literal with our port passes
//! there: rebinding needs a name the attacker controls, and an IP literal is never one.

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The port a `Host` or `Origin` without one means (RFC 9110: http's default).
const HTTP_DEFAULT_PORT: u16 = 80;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("refused: the request has no Host header")]
    MissingHost,
    #[error(
        "refused: Host {0:?} is not this API's address (a web page's request after DNS \
         rebinding looks like this; use the address the router listens on)"
    )]
    ForeignHost(String),
    #[error(
        "refused: Origin {0:?} is not this API's address (web pages may not call the router's \
         API; clients that are not browsers send no Origin)"
    )]
    ForeignOrigin(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (StatusCode::FORBIDDEN, format!("{self}\n")).into_response()
    }
}

/// The names the API answers to: those of the address it is bound to.
#[derive(Debug, Clone, Copy)]
pub struct AllowedHosts {
    bound: SocketAddr,
}

impl AllowedHosts {
    pub fn new(bound: SocketAddr) -> Self {
        Self { bound }
    }

    /// Checks a request's `Host` and `Origin` header values.
    pub fn check(&self, host: Option<&str>, origin: Option<&str>) -> Result<(), Refusal> {
        let host = host.ok_or(Refusal::MissingHost)?;
        if !self.is_ours(host) {
            return Err(Refusal::ForeignHost(host.to_string()));
        }
        match origin {
            None => Ok(()),
            Some(origin) => match origin.strip_prefix("http://") {
                Some(authority) if self.is_ours(authority) => Ok(()),
                _ => Err(Refusal::ForeignOrigin(origin.to_string())),
            },
        }
    }

    /// Whether `authority` (`host[:port]`, a bracketed IPv6 literal for an IPv6 host) names us.
    fn is_ours(&self, authority: &str) -> bool {
        let Some((host, port)) = split_authority(authority) else {
            return false;
        };
        if port != self.bound.port() {
            return false;
        }
        let bound = self.bound.ip();
        match host.parse::<IpAddr>() {
            Ok(ip) => ip == bound || bound.is_unspecified(),
            // Unspecified covers loopback too.
            Err(_) => {
                host.eq_ignore_ascii_case("localhost")
                    && (bound.is_loopback() || bound.is_unspecified())
            }
        }
    }
}

/// `host[:port]` into the host (brackets removed) and the port (80 when absent).
fn split_authority(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        None => HTTP_DEFAULT_PORT,
        Some(port) => port.parse().ok()?,
    };
    (!host.is_empty()).then_some((host, port))
}

async fn guard(State(allowed): State<AllowedHosts>, request: Request, next: Next) -> Response {
    // Checked before awaiting: a borrowed request (its body is not Sync) may not live across it.
    let checked = {
        let value = |name| {
            request
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap_or("(not text)"))
        };
        allowed.check(value(header::HOST), value(header::ORIGIN))
    };
    match checked {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// `router` behind the check, for the API bound at `bound`.
pub fn guarded<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    bound: SocketAddr,
) -> Router<S> {
    router.layer(axum::middleware::from_fn_with_state(
        AllowedHosts::new(bound),
        guard,
    ))
}

#[cfg(test)]
mod tests;
