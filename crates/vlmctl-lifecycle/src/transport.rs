//! How vlmctl talks to a Docker engine on a Unix socket (the local one, or one forwarded over
//! SSH) or at `tcp://` (`http://`): bollard's own Unix and HTTP transports, rebuilt as custom
//! ones whose connections stop reading after [`MAX_ENGINE_ANSWER`] bytes.
//!
//! Why here: bollard collects a whole answer into memory before it decodes it
//! (`Docker::decode_response`), and hands a custom transport's answer on as hyper's `Incoming`,
//! a body type that cannot be wrapped. An engine (or a broken proxy, or something else on the
//! socket) that sends an endless body would make vlmctl grow until the allocator aborts it. The
//! one place left to bound it is the connection itself, under hyper: each request gets a
//! connection of its own (no idle connections are kept, as in bollard's Unix transport), so the
//! bytes read on one connection are the bytes of one answer, headers included.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes vlmctl reads in one answer of the engine: 64 MiB. What vlmctl asks for is far
/// smaller (a `docker ps` of a thousand containers is a few MiB; the progress of pulling a
/// 20 GB image a few MiB; logs are read as a tail or a head).
pub const MAX_ENGINE_ANSWER: u64 = 64 << 20;

/// The error a connection reads once an answer passed [`MAX_ENGINE_ANSWER`].
#[derive(Debug, thiserror::Error)]
#[error(
    "the engine's answer passed {} MiB, more than any answer vlmctl asks for: stopped reading it",
    MAX_ENGINE_ANSWER >> 20
)]
pub struct AnswerTooLarge;

/// Whether `err` (or one of its causes) is [`AnswerTooLarge`].
pub(crate) fn answer_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<AnswerTooLarge>()
            || e.downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .is_some_and(<dyn std::error::Error + Send + Sync>::is::<AnswerTooLarge>)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// What to do about [`AnswerTooLarge`].
pub(crate) fn too_large_hint() -> String {
    format!(
        "a Docker engine answers in a few KiB to a few MiB: check that DOCKER_HOST (or --host) \
         names a Docker engine and not another service or a broken proxy; `docker version` \
         against the same address shows what answers there (vlmctl reads at most {} MiB of an \
         answer)",
        MAX_ENGINE_ANSWER >> 20
    )
}

/// A connection that fails its reads once `left` bytes were read.
struct Limited<S> {
    inner: S,
    left: u64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let read = (buf.filled().len() - before) as u64;
        if read > self.left {
            self.left = 0;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                AnswerTooLarge,
            )));
        }
        self.left -= read;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S> Connection for Limited<S> {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// What a connection runs over.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// hyperlocal's connector for `unix:` URIs, a TCP connection for the others (as bollard's HTTP
/// transport, no TLS: bollard is built without it), each connection [`Limited`] to `limit`
/// bytes read.
#[derive(Clone, Copy)]
struct LimitedConnector {
    limit: u64,
}

impl tower_service::Service<hyper::Uri> for LimitedConnector {
    type Response = TokioIo<Limited<Box<dyn Io>>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let limit = self.limit;
        let unix =
            (uri.scheme_str() == Some("unix")).then(|| hyperlocal::UnixConnector.call(uri.clone()));
        Box::pin(async move {
            let inner: Box<dyn Io> = if let Some(connect) = unix {
                Box::new(connect.await?)
            } else {
                let host = uri.host().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "no host in the engine's URL")
                })?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let port = uri.port_u16().unwrap_or(80);
                let tcp = tokio::net::TcpStream::connect((host, port)).await?;
                tcp.set_nodelay(true)?;
                Box::new(tcp)
            };
            Ok(TokioIo::new(Limited { inner, left: limit }))
        })
    }
}

fn limited_client<B>(
    limit: u64,
) -> std::sync::Arc<hyper_util::client::legacy::Client<LimitedConnector, B>>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    // As bollard's transports: no idle connections kept (one per request), which is also what
    // makes the per-connection limit a per-answer one.
    std::sync::Arc::new(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(LimitedConnector { limit }),
    )
}

/// A client for the engine at `tcp://` or `http://` `address`, reading at most `limit` bytes of
/// each answer.
pub(crate) fn tcp_engine(
    address: &str,
    limit: u64,
) -> Result<bollard::Docker, bollard::errors::Error> {
    let client = limited_client(limit);
    let base = format!(
        "http://{}",
        address
            .trim_start_matches("tcp://")
            .trim_start_matches("http://")
    );
    bollard::Docker::connect_with_custom_transport(
        move |req: bollard::BollardRequest| {
            let client = std::sync::Arc::clone(&client);
            async move {
                client
                    .request(req)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some(base),
        120,
        bollard::API_DEFAULT_VERSION,
    )
}

/// Where a request goes: a fixed socket, or whatever the hook says before each request (the
/// forward of an SSH session, which may have to be opened again first).
pub(crate) type SocketOf = std::sync::Arc<
    dyn Fn() -> Pin<
            Box<dyn Future<Output = Result<std::path::PathBuf, bollard::errors::Error>> + Send>,
        > + Send
        + Sync,
>;

/// A client for the engine on the Unix socket `socket` names, reading at most `limit` bytes of
/// each answer.
pub(crate) fn unix_engine(
    socket: SocketOf,
    limit: u64,
) -> Result<bollard::Docker, bollard::errors::Error> {
    let client = limited_client(limit);
    bollard::Docker::connect_with_custom_transport(
        move |req: bollard::BollardRequest| {
            let client = std::sync::Arc::clone(&client);
            let socket = std::sync::Arc::clone(&socket);
            async move {
                let path = socket().await?;
                let (mut parts, body) = req.into_parts();
                let pq = parts
                    .uri
                    .path_and_query()
                    .map_or("/", hyper::http::uri::PathAndQuery::as_str)
                    .to_owned();
                parts.uri = hyperlocal::Uri::new(path, &pq).into();
                client
                    .request(hyper::Request::from_parts(parts, body))
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        // Only the path of the URLs bollard builds is used.
        Some("http://docker"),
        120,
        bollard::API_DEFAULT_VERSION,
    )
}

/// A fixed socket path, as a [`SocketOf`].
pub(crate) fn fixed(path: std::path::PathBuf) -> SocketOf {
    std::sync::Arc::new(move || {
        let path = path.clone();
        Box::pin(async move { Ok(path) })
    })
}
