use super::*;

use std::io::{Read, Write};

fn on(addr: &str) -> AllowedHosts {
    AllowedHosts::new(addr.parse().unwrap())
}

#[test]
fn host_must_be_the_api_address_or_localhost_on_loopback() {
    let api = on("127.0.0.1:6784");
    assert_eq!(api.check(Some("127.0.0.1:6784"), None), Ok(()));
    assert_eq!(api.check(Some("localhost:6784"), None), Ok(()));
    assert_eq!(api.check(Some("LocalHost:6784"), None), Ok(()));
    for foreign in [
        "evil.example:6784",
        "127.0.0.1:80",
        "127.0.0.1",
        "127.0.0.2:6784",
        "localhost",
        "",
        "127.0.0.1:6784:1",
    ] {
        assert_eq!(
            api.check(Some(foreign), None),
            Err(Refusal::ForeignHost(foreign.to_string())),
            "{foreign}"
        );
    }
    assert_eq!(api.check(None, None), Err(Refusal::MissingHost));
    // Not on loopback, localhost is another machine's name for itself: only the address.
    let api = on("192.0.2.7:6784");
    assert_eq!(api.check(Some("192.0.2.7:6784"), None), Ok(()));
    assert!(api.check(Some("localhost:6784"), None).is_err());
    let api = on("[::1]:6784");
    assert_eq!(api.check(Some("[::1]:6784"), None), Ok(()));
    assert_eq!(api.check(Some("localhost:6784"), None), Ok(()));
    // Port 80 may be left out, as browsers do.
    assert_eq!(on("127.0.0.1:80").check(Some("127.0.0.1"), None), Ok(()));
}

#[test]
fn bound_to_every_address_any_ip_literal_with_our_port_passes_but_no_name() {
    let api = on("0.0.0.0:6784");
    assert_eq!(api.check(Some("10.1.2.3:6784"), None), Ok(()));
    assert_eq!(api.check(Some("localhost:6784"), None), Ok(()));
    assert!(api.check(Some("10.1.2.3:6785"), None).is_err());
    assert!(api.check(Some("rebind.evil.example:6784"), None).is_err());
}

#[test]
fn origin_may_be_absent_but_never_foreign() {
    let api = on("127.0.0.1:6784");
    assert_eq!(
        api.check(Some("127.0.0.1:6784"), Some("http://127.0.0.1:6784")),
        Ok(())
    );
    assert_eq!(
        api.check(Some("127.0.0.1:6784"), Some("http://localhost:6784")),
        Ok(())
    );
    for foreign in [
        "http://evil.example",
        "https://127.0.0.1:6784",
        "http://127.0.0.1:8080",
        "http://127.0.0.1",
        "null",
        "",
    ] {
        assert_eq!(
            api.check(Some("127.0.0.1:6784"), Some(foreign)),
            Err(Refusal::ForeignOrigin(foreign.to_string())),
            "{foreign}"
        );
    }
}

/// A POST route behind the guard, served on an ephemeral loopback port.
async fn guarded_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = guarded(
        axum::Router::new().route("/connect", axum::routing::post(|| async { "done" })),
        addr,
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Sends `head` (a request without its final blank line) and returns the response.
fn raw(addr: std::net::SocketAddr, head: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{head}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_passes_and_a_web_page_is_refused_with_403() {
    let addr = guarded_server().await;
    let cli = tokio::task::spawn_blocking(move || {
        weft_client::client::Client::new(&addr.to_string()).post_form("/connect", &[("peer", "x")])
    })
    .await
    .unwrap();
    assert_eq!(cli.unwrap(), "done");
    let port = addr.port();
    let page = tokio::task::spawn_blocking(move || {
        let cross_site = raw(
            addr,
            &format!(
                "POST /connect HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
                 Origin: http://evil.example\r\n"
            ),
        );
        let rebound = raw(
            addr,
            "POST /connect HTTP/1.1\r\nHost: rebind.evil.example:6784\r\n",
        );
        (cross_site, rebound)
    })
    .await
    .unwrap();
    assert!(page.0.starts_with("HTTP/1.1 403"), "{}", page.0);
    assert!(
        page.0
            .contains("refused: Origin \"http://evil.example\" is not this API's"),
        "{}",
        page.0
    );
    assert!(page.1.starts_with("HTTP/1.1 403"), "{}", page.1);
    assert!(
        page.1
            .contains("refused: Host \"rebind.evil.example:6784\" is not this API's"),
        "{}",
        page.1
    );
}
