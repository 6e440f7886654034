//! A blocking one-shot HTTP/1.1 probe for container health checks.
//!
//! Runtime images carry no curl or wget: each binary answers
//! `--health-check` itself by asking its own listener. That runs as a process
//! of its own, once, so plain blocking I/O with timeouts is the right tool,
//! and the crate depends on nothing.

/// `GET path` over HTTP/1.1 on `addr`, within `timeout`: `Ok` for a 200,
/// otherwise what went wrong (refused, timed out, the status answered).
///
/// An unspecified address (`0.0.0.0`, `::`), as a server listens on in a
/// container, is probed on the loopback of the same family.
pub fn get(
    mut addr: std::net::SocketAddr,
    path: &str,
    timeout: std::time::Duration,
) -> Result<(), String> {
    use std::io::{Read, Write};
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let failed = |error: std::io::Error| format!("GET http://{addr}{path}: {error}");
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(failed)?;
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    stream.set_write_timeout(Some(timeout)).map_err(failed)?;
    // One write: the request goes out as one segment.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: health-check\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(failed)?;
    // The status line is all that is read: "HTTP/1.1 200 OK".
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]).map_err(failed)? {
            0 => break,
            n => read += n,
        }
    }
    let line = String::from_utf8_lossy(&head[..read]);
    match line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(status) => Err(format!("GET http://{addr}{path} answered {status}")),
        None => Err(format!(
            "GET http://{addr}{path}: not an HTTP response ({:?})",
            line.lines().next().unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    /// A one-connection server answering `response`; returns its address
    /// and, once it has answered, the request it read.
    fn answer(response: &'static str) -> (std::net::SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut buf).expect("read") {
                    0 => break,
                    n => request.extend_from_slice(&buf[..n]),
                }
            }
            stream.write_all(response.as_bytes()).expect("write");
            String::from_utf8_lossy(&request).into_owned()
        });
        (addr, served)
    }

    #[test]
    fn a_200_is_healthy_and_the_path_is_asked_for() {
        let (addr, served) = answer("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        assert_eq!(super::get(addr, "/readyz", Duration::from_secs(2)), Ok(()));
        assert!(
            served
                .join()
                .expect("served")
                .starts_with("GET /readyz HTTP/1.1\r\n")
        );
    }

    #[test]
    fn another_status_names_it() {
        let (addr, _served) = answer("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let error = super::get(addr, "/readyz", Duration::from_secs(2)).expect_err("503");
        assert!(error.ends_with("answered 503"), "{error}");
    }

    #[test]
    fn garbage_and_silence_are_unhealthy() {
        let (addr, _served) = answer("SSH-2.0-OpenSSH\r\n");
        let error = super::get(addr, "/", Duration::from_secs(2)).expect_err("not HTTP");
        assert!(
            error.contains("answered") || error.contains("not an HTTP"),
            "{error}"
        );
        let (addr, _served) = answer("");
        assert!(super::get(addr, "/", Duration::from_secs(2)).is_err());
    }

    #[test]
    fn a_closed_port_is_refused_and_unspecified_means_loopback() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let error = super::get(
            ([0, 0, 0, 0], port).into(),
            "/readyz",
            Duration::from_millis(500),
        )
        .expect_err("nothing listens");
        assert!(
            error.starts_with(&format!("GET http://127.0.0.1:{port}/readyz")),
            "{error}"
        );
    }
}
