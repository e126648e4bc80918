//! A stand-in for the router's API in tests: one request, one canned answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread::{self, JoinHandle};

/// A one-request HTTP server answering `response` verbatim; the handle yields the request
/// it received (head and body), so tests can check what was sent.
pub fn one_shot_server(response: &'static str) -> (String, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("local address").to_string();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept the client");
        let mut reader = BufReader::new(stream);
        let mut request = String::new();
        let mut content_length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read a header line");
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().expect("numeric content-length");
            }
            let end_of_head = line == "\r\n" || line.is_empty();
            request.push_str(&line);
            if end_of_head {
                break;
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body).expect("read the body");
        request.push_str(&String::from_utf8_lossy(&body));
        reader
            .get_mut()
            .write_all(response.as_bytes())
            .expect("write the response");
        request
    });
    (addr, handle)
}
