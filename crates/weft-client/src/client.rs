//! The blocking HTTP client the CLI and the CNI plugin talk to the router with: URL building,
//! form encoding, short timeouts, and turning every failure (no router, not ready, refused
//! request) into an [`ApiError`].

use std::io;
use std::time::Duration;

use ureq::http::Response;
use ureq::{Agent, Body, Timeout};

use crate::error::ApiError;

/// The router listens on the same node, so a connection that takes longer than this is not coming.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for a whole exchange, so a wedged router cannot hang a script forever.
const OVERALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one router's HTTP API.
pub struct Client {
    agent: Agent,
    /// The address as the operator gave it, for messages.
    addr: String,
    /// `http://host:port`, without a trailing slash.
    base: String,
}

impl Client {
    /// A client for the API at `http_addr` (`host:port`, as in `WEAVE_HTTP_ADDR`; an `http://`
    /// URL is accepted too).
    pub fn new(http_addr: &str) -> Self {
        Self::with_timeout(http_addr, OVERALL_TIMEOUT)
    }

    /// A client whose exchanges give up after `overall` (the CNI plugin answers "try again
    /// later" rather than keep a pod waiting on an allocator that can't answer yet).
    pub fn with_timeout(http_addr: &str, overall: Duration) -> Self {
        let config = Agent::config_builder()
            // Non-2xx answers carry the router's explanation in the body; we want to read it.
            .http_status_as_error(false)
            // The API is node-local: a cluster-wide HTTP_PROXY must not intercept it.
            .proxy(None)
            .timeout_connect(Some(CONNECT_TIMEOUT.min(overall)))
            .timeout_global(Some(overall))
            .user_agent(concat!("weft/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            agent: config.into(),
            addr: http_addr.to_string(),
            base: base_url(http_addr),
        }
    }

    /// The full URL of an API path (`/status/peers`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`, returning the body of a 2xx answer.
    pub fn get(&self, path: &str) -> Result<String, ApiError> {
        self.finish(self.agent.get(self.url(path)).call())
    }

    /// `GET path` asking for JSON (Weave's `/report` serves JSON only to `Accept: application/json`).
    pub fn get_json(&self, path: &str) -> Result<String, ApiError> {
        let request = self
            .agent
            .get(self.url(path))
            .header("Accept", "application/json");
        self.finish(request.call())
    }

    /// `POST path` with an `application/x-www-form-urlencoded` body, returning the 2xx body.
    pub fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Result<String, ApiError> {
        let request = self
            .agent
            .post(self.url(path))
            .content_type("application/x-www-form-urlencoded");
        self.finish(request.send(form_body(form)))
    }

    /// `DELETE path`, returning the 2xx body.
    pub fn delete(&self, path: &str) -> Result<String, ApiError> {
        self.finish(self.agent.delete(self.url(path)).call())
    }

    /// Maps the outcome of one exchange to the body text or the matching [`ApiError`].
    fn finish(&self, outcome: Result<Response<Body>, ureq::Error>) -> Result<String, ApiError> {
        let mut response = outcome.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport_error(e))?;
        match status.as_u16() {
            200..=299 => Ok(body),
            503 => Err(ApiError::NotReady {
                addr: self.addr.clone(),
                body,
            }),
            code => Err(ApiError::Rejected { status: code, body }),
        }
    }

    /// Tells "there is nobody there" (the common case: the router is not running, or the address
    /// is wrong) from a bad address and from an exchange that broke off half way.
    fn transport_error(&self, source: ureq::Error) -> ApiError {
        let addr = self.addr.clone();
        match &source {
            ureq::Error::Io(e) if is_connect_failure(e.kind()) => {
                ApiError::Unreachable { addr, source }
            }
            ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed => ApiError::Unreachable { addr, source },
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => ApiError::BadAddress { addr, source },
            _ => ApiError::Request { addr, source },
        }
    }
}

/// `http://` + the address, unless the operator already wrote a URL.
fn base_url(http_addr: &str) -> String {
    let addr = http_addr.trim().trim_end_matches('/');
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

fn is_connect_failure(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::AddrNotAvailable
    )
}

/// An `application/x-www-form-urlencoded` body; repeated keys stay repeated (`peer=a&peer=b`).
pub fn form_body(form: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::test_server::one_shot_server;

    /// An address on 127.0.0.1 that nothing listens on: bound, then released.
    fn closed_port_addr() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local address").port();
        drop(listener);
        format!("127.0.0.1:{port}")
    }

    #[test]
    fn url_from_host_port_and_from_url() {
        let client = Client::new("127.0.0.1:6784");
        assert_eq!(
            client.url("/status/peers"),
            "http://127.0.0.1:6784/status/peers"
        );
        assert_eq!(base_url("http://[::1]:6784/"), "http://[::1]:6784");
        assert_eq!(base_url(" localhost:6784 "), "http://localhost:6784");
    }

    #[test]
    fn form_body_repeats_keys_and_escapes_special_characters() {
        let body = form_body(&[
            ("peer", "10.0.0.1:6783"),
            ("peer", "[fd00::1]:6783"),
            ("peer", "a b&c=d+e%f/ü"),
            ("replace", "true"),
        ]);
        assert_eq!(
            body,
            "peer=10.0.0.1%3A6783&peer=%5Bfd00%3A%3A1%5D%3A6783\
             &peer=a+b%26c%3Dd%2Be%25f%2F%C3%BC&replace=true"
        );
        assert_eq!(form_body(&[]), "");
    }

    #[test]
    fn refused_connection_is_unreachable_with_a_hint() {
        let addr = closed_port_addr();
        let err = Client::new(&addr)
            .get("/status")
            .expect_err("nothing listens there");
        assert!(
            matches!(err, ApiError::Unreachable { .. }),
            "unexpected error kind: {err:?}"
        );
        let message = err.to_string();
        let expected_start = format!("cannot reach the router at {addr}: Connection refused");
        assert!(message.starts_with(&expected_start), "{message}");
        assert!(
            message.ends_with("(is it running? set WEAVE_HTTP_ADDR to change the address)"),
            "{message}"
        );
    }

    #[test]
    fn invalid_address_is_reported_as_such() {
        let err = Client::new("not an address")
            .get("/status")
            .expect_err("cannot build a URL");
        assert!(
            matches!(err, ApiError::BadAddress { .. }),
            "unexpected error kind: {err:?}"
        );
    }

    #[test]
    fn post_form_sends_urlencoded_body_and_returns_2xx_body() {
        let (addr, server) = one_shot_server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let body = Client::new(&addr)
            .post_form("/connect", &[("peer", "10.0.0.1"), ("peer", "10.0.0.2")])
            .expect("2xx");
        assert_eq!(body, "ok");
        let request = server.join().expect("server thread");
        assert!(
            request.starts_with("POST /connect HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("content-type: application/x-www-form-urlencoded\r\n"),
            "{request}"
        );
        assert!(
            request.ends_with("\r\n\r\npeer=10.0.0.1&peer=10.0.0.2"),
            "{request}"
        );
    }

    #[test]
    fn status_503_means_not_ready() {
        let (addr, server) = one_shot_server(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 10\r\n\r\nstarting\r\n",
        );
        let err = Client::new(&addr).get("/status").expect_err("503");
        server.join().expect("server thread");
        assert_eq!(
            err.to_string(),
            format!("the router at {addr} is not ready yet: starting")
        );
    }

    #[test]
    fn other_non_2xx_carries_the_body() {
        let (addr, server) = one_shot_server(
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 21\r\n\r\ninvalid peer: \"a:b:c\"",
        );
        let err = Client::new(&addr)
            .post_form("/forget", &[("peer", "a:b:c")])
            .expect_err("400");
        server.join().expect("server thread");
        assert!(
            matches!(&err, ApiError::Rejected { status: 400, .. }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "invalid peer: \"a:b:c\"");
    }

    #[test]
    fn get_json_asks_for_json() {
        let (addr, server) = one_shot_server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
        let body = Client::new(&addr).get_json("/report").expect("2xx");
        assert_eq!(body, "{}");
        let request = server.join().expect("server thread");
        assert!(request.starts_with("GET /report HTTP/1.1\r\n"), "{request}");
        assert!(
            request
                .to_ascii_lowercase()
                .contains("accept: application/json\r\n"),
            "{request}"
        );
    }
}
