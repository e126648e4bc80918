//! The IPAM part of the HTTP API, Weave Net-compatible: `/ip/...` to allocate, claim, look up and
//! free addresses, `/peer` for `rmpeer` and `reset`, `/status/ipam`.

use std::net::Ipv4Addr;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Serialize;

use super::http::ApiState;
use super::ipam_text;
use crate::actors::ipam::{GetIpamSnapshot, IpamActorError, Lookup, Owned, Submit};
use crate::ipam::{Address, Cidr, IpamError, Reply, Request};

/// Errors of the IPAM endpoints.
#[derive(Debug, thiserror::Error)]
pub enum IpamApiError {
    #[error("IP address management is not enabled on this router")]
    Disabled,
    #[error("the IPAM subsystem is restarting; try again")]
    Unavailable,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Ipam(#[from] IpamActorError),
}

impl IntoResponse for IpamApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            IpamApiError::Disabled => StatusCode::NOT_FOUND,
            IpamApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            IpamApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            IpamApiError::Ipam(IpamActorError::Ipam(err)) => status_of(err),
            IpamApiError::Ipam(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, format!("{self}\n")).into_response()
    }
}

/// The HTTP status of an allocator refusal: the caller's mistake, someone else's address, or
/// something to retry later.
fn status_of(err: &IpamError) -> StatusCode {
    match err {
        IpamError::SubnetOutsideRange { .. }
        | IpamError::AddressOutsideRange { .. }
        | IpamError::AddressOutsideSubnet { .. }
        | IpamError::CannotRemoveSelf { .. }
        | IpamError::InvalidIdent { .. }
        | IpamError::AmbiguousNickname { .. } => StatusCode::BAD_REQUEST,
        IpamError::UnknownPeer { .. } => StatusCode::NOT_FOUND,
        IpamError::AddressInUse { .. }
        | IpamError::OwnedByOtherPeerInUse { .. }
        | IpamError::AddressHeldByOther { .. }
        | IpamError::PeerIsLive { .. }
        | IpamError::NoLiveHeir { .. } => StatusCode::CONFLICT,
        IpamError::OwnerUnreachable { .. } | IpamError::Cancelled { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/ip", get(owned))
        .route("/ip/{id}", post(allocate).get(lookup).delete(free))
        .route(
            "/ip/{id}/{ip}/{prefix}",
            post(allocate_in).put(claim).get(lookup_in),
        )
        .route("/ip/{id}/{ip}", delete(free_address))
        .route("/peer", delete(reset))
        .route("/peer/{peer}", delete(remove_peer))
        .route("/status/ipam", get(status_ipam))
}

fn ipam(state: &ApiState) -> Result<&super::http::IpamApi, IpamApiError> {
    state.ipam.as_ref().ok_or(IpamApiError::Disabled)
}

async fn submit(state: &ApiState, request: Request) -> Result<Reply, IpamApiError> {
    let receiver = ipam(state)?
        .actor
        .addr()
        .send(Submit(request))
        .await
        .map_err(|_| IpamApiError::Unavailable)?;
    // If our client goes away, this future is dropped with the receiver, and the actor cancels
    // the request on its next tick.
    let reply = receiver.await.map_err(|_| IpamApiError::Unavailable)?;
    Ok(reply?)
}

fn subnet(ip: &str, prefix: &str) -> Result<Cidr, IpamApiError> {
    format!("{ip}/{prefix}")
        .parse::<Cidr>()
        .map_err(|err| IpamApiError::BadRequest(err.to_string()))
}

fn address(ip: &str) -> Result<Address, IpamApiError> {
    ip.parse::<Ipv4Addr>()
        .map(Address::from)
        .map_err(|_| IpamApiError::BadRequest(format!("invalid IPv4 address {ip:?}")))
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn allocated(reply: Reply) -> Response {
    match reply {
        Reply::Allocated(cidr) => text(cidr.to_string()),
        Reply::Done => StatusCode::NO_CONTENT.into_response(),
        Reply::TookOver { count, peer } => text(format!("{count} IPs taken over from {peer}\n")),
    }
}

async fn allocate(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, IpamApiError> {
    let subnet = ipam(&state)?.default_subnet;
    Ok(allocated(
        submit(&state, Request::Allocate { ident: id, subnet }).await?,
    ))
}

async fn allocate_in(
    State(state): State<ApiState>,
    Path((id, ip, prefix)): Path<(String, String, String)>,
) -> Result<Response, IpamApiError> {
    let subnet = subnet(&ip, &prefix)?;
    Ok(allocated(
        submit(&state, Request::Allocate { ident: id, subnet }).await?,
    ))
}

async fn claim(
    State(state): State<ApiState>,
    Path((id, ip, prefix)): Path<(String, String, String)>,
) -> Result<StatusCode, IpamApiError> {
    let addr = address(&ip)?;
    let request = Request::Claim {
        ident: id,
        addr,
        subnet: enclosing_subnet(addr, &prefix)?,
    };
    submit(&state, request).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The subnet `/{prefix}` around a claimed address (which has host bits set). The prefix comes
/// from the URL: anything but 0..=32 is the caller's mistake, never arithmetic we attempt.
fn enclosing_subnet(addr: Address, prefix: &str) -> Result<Cidr, IpamApiError> {
    let len: u8 = prefix
        .parse()
        .map_err(|_| IpamApiError::BadRequest(format!("invalid prefix length {prefix:?}")))?;
    Cidr::enclosing(addr, len).map_err(|err| IpamApiError::BadRequest(err.to_string()))
}

async fn lookup(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, IpamApiError> {
    lookup_matching(&state, id, None).await
}

async fn lookup_in(
    State(state): State<ApiState>,
    Path((id, ip, prefix)): Path<(String, String, String)>,
) -> Result<Response, IpamApiError> {
    let within = subnet(&ip, &prefix)?;
    lookup_matching(&state, id, Some(within)).await
}

/// The addresses of `id` (in `within`, when given), space-separated; 404 when there are none.
async fn lookup_matching(
    state: &ApiState,
    id: String,
    within: Option<Cidr>,
) -> Result<Response, IpamApiError> {
    let found = ipam(state)?
        .actor
        .addr()
        .send(Lookup(id.clone()))
        .await
        .map_err(|_| IpamApiError::Unavailable)?;
    let found: Vec<String> = found
        .into_iter()
        .filter(|found| within.is_none_or(|subnet| subnet.contains(found.address)))
        .map(|cidr| cidr.to_string())
        .collect();
    if found.is_empty() {
        return Ok((StatusCode::NOT_FOUND, format!("no addresses for {id}\n")).into_response());
    }
    Ok(text(found.join(" ")))
}

#[derive(Serialize)]
struct OwnedEntry {
    containerid: String,
    addrs: Vec<String>,
}

#[derive(Serialize)]
struct OwnedAddresses {
    owned: Vec<OwnedEntry>,
}

async fn owned(State(state): State<ApiState>) -> Result<Response, IpamApiError> {
    let owned = ipam(&state)?
        .actor
        .addr()
        .send(Owned)
        .await
        .map_err(|_| IpamApiError::Unavailable)?;
    let body = OwnedAddresses {
        owned: owned
            .into_iter()
            .map(|(containerid, addrs)| OwnedEntry {
                containerid,
                addrs: addrs.iter().map(|a| a.to_string()).collect(),
            })
            .collect(),
    };
    Ok(axum::Json(body).into_response())
}

async fn free(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, IpamApiError> {
    submit(&state, Request::Free { ident: id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn free_address(
    State(state): State<ApiState>,
    Path((id, ip)): Path<(String, String)>,
) -> Result<StatusCode, IpamApiError> {
    let addr = address(&ip)?;
    submit(&state, Request::FreeAddress { ident: id, addr }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_peer(
    State(state): State<ApiState>,
    Path(peer): Path<String>,
) -> Result<Response, IpamApiError> {
    Ok(allocated(
        submit(&state, Request::RemovePeer { peer }).await?,
    ))
}

async fn reset(State(state): State<ApiState>) -> Result<Response, IpamApiError> {
    Ok(allocated(submit(&state, Request::Reset).await?))
}

async fn status_ipam(State(state): State<ApiState>) -> Result<Response, IpamApiError> {
    let snapshot = ipam(&state)?
        .actor
        .addr()
        .send(GetIpamSnapshot)
        .await
        .map_err(|_| IpamApiError::Unavailable)?;
    Ok(text(ipam_text::ranges(&snapshot)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claims_subnet_is_the_network_around_it_and_bad_prefixes_are_refused() {
        let addr = address("10.32.1.9").unwrap();
        assert_eq!(
            enclosing_subnet(addr, "12").unwrap(),
            "10.32.0.0/12".parse::<Cidr>().unwrap()
        );
        for prefix in ["33", "64", "255", "256", "-1", "", "x"] {
            assert!(
                matches!(
                    enclosing_subnet(addr, prefix),
                    Err(IpamApiError::BadRequest(_))
                ),
                "/{prefix}"
            );
        }
    }
}
