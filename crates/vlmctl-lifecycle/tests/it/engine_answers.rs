//! F15 of the 2026-12-07 adversarial pass: an engine (or whatever listens on the socket) that
//! answers with an endless body. vlmctl stops reading at its bound and fails with an error that
//! says so, instead of buffering until the allocator aborts it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use vlmctl_lifecycle::LifecycleError;

/// Where the fake engine listens: a Unix socket in `dir`, or 127.0.0.1. Returns the address
/// (as `DOCKER_HOST` would name it) and the bytes of body it managed to send.
fn fake_engine(dir: &std::path::Path, tcp: bool, endless: bool) -> (String, Arc<AtomicU64>) {
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let serve = move |conn: Box<dyn ReadWrite>| {
        let counter = Arc::clone(&counter);
        std::thread::spawn(move || answer(conn, &counter, endless));
    };
    let address = if tcp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = format!("tcp://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                serve(Box::new(conn));
            }
        });
        address
    } else {
        let path = dir.join("engine.sock");
        let listener = UnixListener::bind(&path).expect("bind the fake engine");
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                serve(Box::new(conn));
            }
        });
        format!("unix://{}", path.display())
    };
    (address, sent)
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// `/_ping` answers `OK`, `/version` a JSON object that never ends (chunked), unless `endless`
/// is false.
fn answer(mut conn: Box<dyn ReadWrite>, counter: &AtomicU64, endless: bool) {
    let mut request_line = String::new();
    {
        let mut reader = BufReader::new(&mut conn);
        let _ = reader.read_line(&mut request_line);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
    }
    if !request_line.contains("/version") {
        let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK",
                    );
        return;
    }
    if !endless {
        let body = br#"{"ApiVersion":"1.41","Version":"20.10.0","MinAPIVersion":"1.12"}"#;
        let _ = conn.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        let _ = conn.write_all(body);
        return;
    }
    let _ = conn.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let start = br#"{"ApiVersion":"1.41","Padding":""#;
    let _ = conn.write_all(format!("{:x}\r\n", start.len()).as_bytes());
    let _ = conn.write_all(start);
    let _ = conn.write_all(b"\r\n");
    let chunk = vec![b'a'; 64 << 10];
    // Until vlmctl hangs up.
    loop {
        if conn
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .and_then(|()| conn.write_all(&chunk))
            .and_then(|()| conn.write_all(b"\r\n"))
            .is_err()
        {
            return;
        }
        counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
    }
}

async fn endless(tcp: bool) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (address, sent) = fake_engine(tmp.path(), tcp, true);
    let limit = 4 << 20;
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        vlmctl_lifecycle::connect_address(&address, limit),
    )
    .await
    .expect("it ends, and does not read for ever")
    .expect_err("an endless answer is an error");
    assert!(
        matches!(err, LifecycleError::DaemonUnreachable { .. }),
        "{err:?}"
    );
    let chain = vlmctl_base::chain::one_line(&err);
    assert!(chain.contains("stopped reading it"), "{chain}");
    let hint = err.hint();
    assert!(hint.contains("names a Docker engine"), "{hint}");
    // What was sent before vlmctl hung up: the bound, and what the socket buffers held. Polled
    // until the count stops growing (the engine's writes fail once vlmctl closed).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut last = sent.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sent.load(Ordering::SeqCst);
        if now == last || std::time::Instant::now() > deadline {
            break;
        }
        last = now;
    }
    assert!(
        last < limit + (8 << 20),
        "read about the bound, not more: {last} bytes sent"
    );
}

#[tokio::test]
async fn an_endless_answer_on_a_unix_socket_is_cut_at_the_bound_with_an_error_that_says_so() {
    endless(false).await;
}

#[tokio::test]
async fn an_endless_answer_over_tcp_is_cut_at_the_bound_with_an_error_that_says_so() {
    endless(true).await;
}

#[tokio::test]
async fn an_engine_that_answers_in_bounds_is_used_on_a_socket_and_over_tcp() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for tcp in [false, true] {
        let (address, _sent) = fake_engine(tmp.path(), tcp, false);
        let docker = vlmctl_lifecycle::connect_address(&address, 4 << 20)
            .await
            .expect("a small answer is read");
        let v = docker.version().await.expect("version");
        assert_eq!(v.api_version.as_deref(), Some("1.41"), "{address}");
    }
}
