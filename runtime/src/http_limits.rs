//! Limits on the one HTTP listener, so that no client — with or without
//! credentials — can hold descriptors or memory without bound:
//!
//! - **Connections**: at most `http.max_connections` open at once (calls
//!   included); past it a new connection gets a bare 503 and is closed.
//! - **Per client**: at most `http.max_connections_per_client` connections
//!   from one address that are not (yet) calls. A Media Stream whose upgrade
//!   is admitted stops counting against its client: Twilio carries many
//!   calls from few addresses, and calls are bounded by `max_calls`.
//! - **Behind a proxy** every caller shares the proxy's address. A peer in
//!   `http.trusted_proxies` is not capped per connection; instead the client
//!   named by `X-Forwarded-For` (its rightmost address that is not itself a
//!   trusted proxy) is capped by its requests in flight. `X-Forwarded-For`
//!   from any other peer is ignored: anyone can write that header.
//! - **Stuck clients**: a write to any connection (an HTTP response, or a
//!   call's stream after its upgrade) that cannot make progress for
//!   `write_timeout_secs` fails, and the connection with it
//!   ([`WriteDeadline`]).
//! - **Slow clients**: a request head must arrive within
//!   `http.idle_timeout_secs` of the connection opening or of the previous
//!   response (hyper's header timeout, which also closes idle keep-alive
//!   connections), and a body within `http.body_timeout_secs`, at most
//!   `http.max_body_bytes` long — webhooks read their body before they can
//!   check its signature, so a trickled body must not hold a connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// `hark_http_refused_total{reason}`: connections and requests refused by a limit.
pub const REFUSED: &str = "hark_http_refused_total";
/// `hark_http_connections`: connections open (calls included).
pub const CONNECTIONS: &str = "hark_http_connections";

/// The `[http]` section of the runtime config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// A connection must send a complete request head within this long of
    /// opening, or of its previous response (idle keep-alive connections
    /// are closed by the same clock).
    pub idle_timeout_secs: u64,
    /// A request body must arrive in full within this long.
    pub body_timeout_secs: u64,
    /// Larger request bodies are refused (413).
    pub max_body_bytes: usize,
    /// Connections open at once, calls included.
    pub max_connections: usize,
    /// Connections from one client address that are not calls.
    pub max_connections_per_client: usize,
    /// Proxies and load balancers (addresses or CIDR blocks) whose
    /// `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 30,
            body_timeout_secs: 10,
            max_body_bytes: 64 * 1024,
            max_connections: 11_000,
            max_connections_per_client: 64,
            trusted_proxies: Vec::new(),
        }
    }
}

impl HttpSettings {
    pub fn validate(&self, max_calls: usize) -> Vec<String> {
        let mut errors = Vec::new();
        for (field, v, lo, hi) in [
            ("http.idle_timeout_secs", self.idle_timeout_secs, 1, 3600),
            ("http.body_timeout_secs", self.body_timeout_secs, 1, 600),
        ] {
            if !(lo..=hi).contains(&v) {
                errors.push(format!("{field}: {v} is outside {lo}..={hi}"));
            }
        }
        if !(1024..=16 << 20).contains(&self.max_body_bytes) {
            errors.push(format!(
                "http.max_body_bytes: {} is outside 1024..=16777216",
                self.max_body_bytes
            ));
        }
        if self.max_connections < max_calls {
            errors.push(format!(
                "http.max_connections: {} is less than max_calls ({max_calls}): every call is a connection",
                self.max_connections
            ));
        }
        if self.max_connections_per_client == 0 {
            errors.push("http.max_connections_per_client: must be at least 1".into());
        }
        if let Err(e) = parse_proxies(&self.trusted_proxies) {
            errors.push(format!("http.trusted_proxies: {e}"));
        }
        errors
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }
}

/// `10.0.0.0/8`, `192.168.1.10`, `::1`: blocks and single addresses.
pub fn parse_proxies(list: &[String]) -> Result<Vec<IpNet>, String> {
    list.iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))
        })
        .collect()
}

/// Why a connection or request was refused: the `reason` of [`REFUSED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    PerClient,
    BodyTimeout,
    BodyTooLarge,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::PerClient => "max_connections_per_client",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::BodyTooLarge => "body_too_large",
        }
    }

    fn count(self) {
        metrics::counter!(REFUSED, "reason" => self.as_str()).increment(1);
    }
}

pub struct ConnLimits {
    settings: HttpSettings,
    trusted: Vec<IpNet>,
    open: AtomicUsize,
    /// Per client address: connections that are not calls, plus requests in
    /// flight through a trusted proxy.
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnLimits {
    pub fn new(settings: &HttpSettings) -> Result<Arc<Self>, String> {
        Ok(Arc::new(Self {
            trusted: parse_proxies(&settings.trusted_proxies)?,
            settings: settings.clone(),
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
        }))
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn take_client(&self, client: IpAddr) -> bool {
        let mut clients = self.clients();
        let n = clients.entry(client).or_insert(0);
        if *n >= self.settings.max_connections_per_client {
            return false;
        }
        *n += 1;
        true
    }

    fn release_client(&self, client: IpAddr) {
        let mut clients = self.clients();
        if let Some(n) = clients.get_mut(&client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                clients.remove(&client);
            }
        }
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// A place for a new connection from `peer`, or why not.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Arc<ConnTicket>, Refusal> {
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        if open >= self.settings.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            Refusal::MaxConnections.count();
            return Err(Refusal::MaxConnections);
        }
        // A trusted proxy carries everyone: its clients are capped per request.
        let client = (!self.is_trusted(peer.ip())).then_some(peer.ip());
        if let Some(ip) = client
            && !self.take_client(ip)
        {
            self.open.fetch_sub(1, Ordering::AcqRel);
            Refusal::PerClient.count();
            return Err(Refusal::PerClient);
        }
        metrics::gauge!(CONNECTIONS).increment(1.0);
        Ok(Arc::new(ConnTicket {
            limits: Arc::clone(self),
            peer,
            client,
            graduated: AtomicBool::new(client.is_none()),
        }))
    }

    /// The client behind a request from `peer`: `peer` itself, unless it is
    /// a trusted proxy and `X-Forwarded-For` names someone.
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        // Each proxy appends the address it received from; read from the
        // right, past our own proxies, to the first address one of them saw.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) if self.is_trusted(ip) => continue,
                Some(ip) => return ip,
                // Garbage where a trusted proxy wrote: trust none of it.
                None => return peer,
            }
        }
        peer
    }
}

/// An `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:5`,
/// `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// One open connection's place in the limits; released when dropped.
pub struct ConnTicket {
    limits: Arc<ConnLimits>,
    pub peer: SocketAddr,
    /// The client whose per-client count this connection holds.
    client: Option<IpAddr>,
    /// Became a call (or never counted per client).
    graduated: AtomicBool,
}

impl ConnTicket {
    /// The connection is now an admitted call: it no longer counts against
    /// its client (calls are bounded by `max_calls`).
    pub fn graduate(&self) {
        if !self.graduated.swap(true, Ordering::AcqRel)
            && let Some(ip) = self.client
        {
            self.limits.release_client(ip);
        }
    }
}

impl Drop for ConnTicket {
    fn drop(&mut self) {
        self.graduate();
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(CONNECTIONS).decrement(1.0);
    }
}

/// The client address of a request (see [`ConnLimits::client_addr`]), for
/// handlers and logs.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// A request in flight through a trusted proxy, counted against its client.
struct InFlight {
    limits: Arc<ConnLimits>,
    client: IpAddr,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.limits.release_client(self.client);
    }
}

/// Per request: works out the client, caps a proxied client's requests in
/// flight, and reads any body within the deadline and size limit.
pub async fn guard(
    State(limits): State<Arc<ConnLimits>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(ticket) = req.extensions().get::<Arc<ConnTicket>>().cloned() else {
        return next.run(req).await;
    };
    let peer = ticket.peer.ip();
    let client = limits.client_addr(peer, req.headers());
    req.extensions_mut().insert(ClientAddr(client));
    let _in_flight = if client != peer {
        if !limits.take_client(client) {
            Refusal::PerClient.count();
            tracing::debug!(%client, "too many requests in flight from one client");
            return refuse(StatusCode::TOO_MANY_REQUESTS, Refusal::PerClient);
        }
        Some(InFlight {
            limits: Arc::clone(&limits),
            client,
        })
    } else {
        None
    };
    if may_have_body(&req) {
        let limit = limits.settings.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            Refusal::BodyTooLarge.count();
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, Refusal::BodyTooLarge);
        }
        let (parts, body) = req.into_parts();
        let read = tokio::time::timeout(
            limits.settings.body_timeout(),
            axum::body::to_bytes(body, limit),
        );
        let bytes = match read.await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => {
                Refusal::BodyTooLarge.count();
                return refuse(StatusCode::PAYLOAD_TOO_LARGE, Refusal::BodyTooLarge);
            }
            Err(_) => {
                Refusal::BodyTimeout.count();
                tracing::debug!(%client, "request body too slow; refused");
                return refuse(StatusCode::REQUEST_TIMEOUT, Refusal::BodyTimeout);
            }
        };
        req = Request::from_parts(parts, Body::from(bytes));
    }
    next.run(req).await
}

fn may_have_body(req: &Request) -> bool {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !req.headers().contains_key(header::CONTENT_LENGTH)
        && !req.headers().contains_key(header::TRANSFER_ENCODING)
    {
        return false;
    }
    !matches!(
        req.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()),
        Some("0")
    )
}

fn refuse(code: StatusCode, why: Refusal) -> Response {
    let mut res = (code, format!("refused: {}\n", why.as_str())).into_response();
    // The connection may hold an unread body: do not keep it.
    res.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    res
}

/// A socket whose writes fail once one has been pending for `limit`: a
/// peer that stopped reading cannot hold a connection (or the task serving
/// it) forever. Reads pass through; a write that completes at once costs
/// nothing extra.
pub struct WriteDeadline<T> {
    io: T,
    limit: Duration,
    /// Armed while a write is pending.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    pub fn new(io: T, limit: Duration) -> Self {
        Self {
            io,
            limit,
            deadline: None,
        }
    }

    /// Called when a write is pending: fails once the deadline passes.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let limit = self.limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(deadline.as_mut().poll(cx));
        self.deadline = None;
        Poll::Ready(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "socket write timed out: the peer stopped reading",
        ))
    }

    fn done<R>(&mut self, r: R) -> Poll<R> {
        self.deadline = None;
        Poll::Ready(r)
    }
}

use std::future::Future as _;

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(r) => self.done(r),
            Poll::Pending => self.check(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => self.done(r),
            Poll::Pending => self.check(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(r) => self.done(r),
            Poll::Pending => self.check(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Ready(r) => self.done(r),
            Poll::Pending => self.check(cx).map(Err),
        }
    }
}

/// What a connection refused at accept gets before it is closed.
pub const REFUSED_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_client: usize, total: usize, trusted: &[&str]) -> Arc<ConnLimits> {
        ConnLimits::new(&HttpSettings {
            max_connections: total,
            max_connections_per_client: per_client,
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            ..HttpSettings::default()
        })
        .unwrap()
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn connections_are_capped_per_client_and_in_total() {
        let l = limits(2, 3, &[]);
        let a1 = l.admit(peer("10.0.0.1")).unwrap();
        let _a2 = l.admit(peer("10.0.0.1")).unwrap();
        assert_eq!(l.admit(peer("10.0.0.1")).err(), Some(Refusal::PerClient));
        let _b = l.admit(peer("10.0.0.2")).unwrap();
        assert_eq!(
            l.admit(peer("10.0.0.3")).err(),
            Some(Refusal::MaxConnections)
        );
        // A call no longer counts against its client, but still in total.
        a1.graduate();
        a1.graduate();
        assert_eq!(
            l.admit(peer("10.0.0.3")).err(),
            Some(Refusal::MaxConnections)
        );
        drop(_b);
        assert!(l.admit(peer("10.0.0.1")).is_ok());
        drop(a1);
        assert_eq!(l.clients().get(&"10.0.0.1".parse().unwrap()), Some(&1));
    }

    #[test]
    fn a_trusted_proxy_is_not_capped_per_connection() {
        let l = limits(1, 100, &["10.1.0.0/16"]);
        let _p1 = l.admit(peer("10.1.2.3")).unwrap();
        let _p2 = l.admit(peer("10.1.2.3")).unwrap();
        assert!(l.clients().is_empty());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let l = limits(8, 100, &["10.1.0.0/16", "192.168.0.5"]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        // From a stranger the header is ignored.
        assert_eq!(l.client_addr(stranger, &xff(&["198.51.100.1"])), stranger);
        // From our proxy: the address it saw.
        assert_eq!(
            l.client_addr(proxy, &xff(&["198.51.100.1"])),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        // The client cannot pick its address: the rightmost untrusted wins.
        assert_eq!(
            l.client_addr(proxy, &xff(&["1.1.1.1, 198.51.100.1", "192.168.0.5"])),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            l.client_addr(proxy, &xff(&["[2001:db8::1]:443"])),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        // Garbage, or no header: the proxy itself.
        assert_eq!(l.client_addr(proxy, &xff(&["1.1.1.1, not-an-ip"])), proxy);
        assert_eq!(l.client_addr(proxy, &HeaderMap::new()), proxy);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_reads_fails_after_the_deadline() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = WriteDeadline::new(a, Duration::from_secs(5));
        // Room in the pipe: writes complete at once.
        io.write_all(&[1; 64]).await.unwrap();
        let began = tokio::time::Instant::now();
        let err = io.write_all(&[2; 64]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(began.elapsed(), Duration::from_secs(5));
        // A reader that reads keeps it alive past the deadline.
        let mut buf = [0u8; 64];
        b.read_exact(&mut buf).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut total = 0;
            let mut buf = [0u8; 64];
            while total < 640 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                total += b.read(&mut buf).await.unwrap();
            }
        });
        io.write_all(&[3; 640]).await.unwrap();
        reader.await.unwrap();
    }

    #[test]
    fn settings_are_validated() {
        let bad = HttpSettings {
            trusted_proxies: vec!["10.0.0.0/33".into(), "nope".into()],
            max_connections: 5,
            idle_timeout_secs: 0,
            ..HttpSettings::default()
        };
        let errors = bad.validate(10).join("\n");
        for want in [
            "http.trusted_proxies",
            "http.max_connections",
            "http.idle_timeout_secs",
        ] {
            assert!(errors.contains(want), "{errors}");
        }
        assert!(HttpSettings::default().validate(10_000).is_empty());
    }
}
