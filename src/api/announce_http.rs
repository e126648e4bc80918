//! `POST /announce`: the CNI plugin (or anyone wiring a pod to the bridge) asks the router to
//! announce a pod's address with a gratuitous ARP from the bridge, once the pod is wired. The
//! router keeps the packet socket open, so the plugin's ADD does not wait for the RCU grace
//! period that closing one costs (see [`crate::dataplane::garp`]).
//!
//! Form fields (body or query): `ip=<IPv4 address>&mac=<the pod interface's MAC>`. An address in
//! the router's IPAM range must be one it handed out, so no caller can make it claim another
//! node's pod; addresses outside the range (a delegated IPAM plugin's) are announced as given.

use std::net::Ipv4Addr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::http::ApiState;
use crate::actors::ipam::Owned;
use crate::dataplane::MacAddr;
use crate::ipam::Address;

/// Errors of `/announce`.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("this router has no data plane to announce pods on")]
    NoDataplane,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} is in the IPAM range but this router did not hand it out: not announcing it")]
    NotOurs(Ipv4Addr),
    #[error("the IPAM subsystem is restarting; try again")]
    Unavailable,
    #[error("announcing failed: {0}")]
    Failed(String),
}

impl IntoResponse for AnnounceError {
    fn into_response(self) -> Response {
        let status = match self {
            AnnounceError::NoDataplane => StatusCode::NOT_FOUND,
            AnnounceError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AnnounceError::NotOurs(_) => StatusCode::CONFLICT,
            AnnounceError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AnnounceError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, format!("{self}\n")).into_response()
    }
}

pub fn routes() -> Router<ApiState> {
    Router::new().route("/announce", post(announce))
}

/// The address and MAC a request names, checked: a unicast IPv4 address and a MAC an interface
/// can have.
fn parse_form(query: Option<&str>, body: &[u8]) -> Result<(Ipv4Addr, MacAddr), AnnounceError> {
    let query = query.unwrap_or_default().as_bytes();
    let (mut ip, mut mac) = (None, None);
    for (key, value) in form_urlencoded::parse(body).chain(form_urlencoded::parse(query)) {
        match key.as_ref() {
            "ip" => ip = ip.or(Some(value.into_owned())),
            "mac" => mac = mac.or(Some(value.into_owned())),
            _ => {}
        }
    }
    let missing = |field| AnnounceError::BadRequest(format!("announce needs {field}=..."));
    let ip = ip.ok_or_else(|| missing("ip"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| AnnounceError::BadRequest(format!("{ip:?} is not an IPv4 address")))?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(AnnounceError::BadRequest(format!(
            "{ip} is not a pod's unicast address"
        )));
    }
    let mac = mac.ok_or_else(|| missing("mac"))?;
    let mac: MacAddr = mac
        .parse()
        .map_err(|err| AnnounceError::BadRequest(format!("{mac:?}: {err}")))?;
    if !mac.is_learnable() {
        return Err(AnnounceError::BadRequest(format!(
            "{mac} is not an interface's MAC (multicast or zero)"
        )));
    }
    Ok((ip, mac))
}

async fn announce(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<StatusCode, AnnounceError> {
    let (ip, mac) = parse_form(query.as_deref(), &body)?;
    let announcer = state.announcer.as_ref().ok_or(AnnounceError::NoDataplane)?;
    if let Some(ipam) = &state.ipam
        && ipam.default_subnet.contains(Address::from(ip))
    {
        let owned = ipam
            .actor
            .addr()
            .send(Owned)
            .await
            .map_err(|_| AnnounceError::Unavailable)?;
        let address = Address::from(ip);
        if !owned.values().flatten().any(|mine| *mine == address) {
            return Err(AnnounceError::NotOurs(ip));
        }
    }
    announcer
        .announce(mac, ip)
        .await
        .map_err(|err| AnnounceError::Failed(err.to_string()))?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests;
