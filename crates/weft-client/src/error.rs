//! What can go wrong between a client and the router's HTTP API, worded for an operator: the
//! `Display` text is the whole message, and says what to do about it where it can.

use std::fmt;

/// A failed exchange with the router's API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No connection could be made: the router is down, or the address is wrong.
    #[error(
        "cannot reach the router at {addr}: {} (is it running? set WEAVE_HTTP_ADDR to change the address)",
        Reason(source)
    )]
    Unreachable { addr: String, source: ureq::Error },

    /// The address could not be turned into a request URL.
    #[error(
        "invalid router address {addr:?} (expected host:port): {}",
        Reason(source)
    )]
    BadAddress { addr: String, source: ureq::Error },

    /// Connected, but the exchange broke off (timeout, reset, garbled response).
    #[error("request to the router at {addr} failed: {}", Reason(source))]
    Request { addr: String, source: ureq::Error },

    /// HTTP 503: the router is up but has not finished starting (Weave answers status requests
    /// this way until it is ready).
    #[error("the router at {addr} is not ready yet{}", Detail(body))]
    NotReady { addr: String, body: String },

    /// Any other non-2xx answer; the router's body says why (e.g. an invalid peer address).
    #[error("{}", Rejected { status: *status, body })]
    Rejected { status: u16, body: String },
}

/// A ureq error without ureq's `io: ` style prefixes: the operator wants "Connection refused".
struct Reason<'a>(&'a ureq::Error);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ureq::Error::Io(e) => write!(f, "{e}"),
            ureq::Error::Timeout(phase) => write!(f, "timed out ({phase})"),
            other => write!(f, "{other}"),
        }
    }
}

/// `: <body>` when the router said something, nothing otherwise.
struct Detail<'a>(&'a str);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.trim() {
            "" => Ok(()),
            text => write!(f, ": {text}"),
        }
    }
}

/// The router's own words when it gave any, else the bare status code.
struct Rejected<'a> {
    status: u16,
    body: &'a str,
}

impl fmt::Display for Rejected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.body.trim() {
            "" => write!(f, "the router answered HTTP {}", self.status),
            text => write!(f, "{text}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_shows_the_body_or_the_status() {
        let with_body = ApiError::Rejected {
            status: 400,
            body: "invalid peer address \"x:y:z\"\n".to_string(),
        };
        assert_eq!(with_body.to_string(), "invalid peer address \"x:y:z\"");
        let without = ApiError::Rejected {
            status: 404,
            body: " \n".to_string(),
        };
        assert_eq!(without.to_string(), "the router answered HTTP 404");
    }

    #[test]
    fn not_ready_says_so() {
        let err = ApiError::NotReady {
            addr: "127.0.0.1:6784".to_string(),
            body: String::new(),
        };
        assert_eq!(
            err.to_string(),
            "the router at 127.0.0.1:6784 is not ready yet"
        );
        let err = ApiError::NotReady {
            addr: "127.0.0.1:6784".to_string(),
            body: "waiting for the peer name\n".to_string(),
        };
        assert_eq!(
            err.to_string(),
            "the router at 127.0.0.1:6784 is not ready yet: waiting for the peer name"
        );
    }

    #[test]
    fn timeouts_name_the_phase() {
        let err = ApiError::Request {
            addr: "127.0.0.1:6784".to_string(),
            source: ureq::Error::Timeout(ureq::Timeout::Global),
        };
        assert_eq!(
            err.to_string(),
            "request to the router at 127.0.0.1:6784 failed: timed out (global)"
        );
    }
}
