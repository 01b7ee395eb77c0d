//! Opening a connection to a backend: TCP (`TCP_NODELAY`), then for a TLS group the handshake
//! (verified, with SNI), each step within the connect timeout. A failure here means nothing of
//! the request was sent, so another backend may always be tried ([`UpstreamFailure`] says
//! whether it was a refusal, a timeout or the proxy's own lack of resources).

use super::failure::UpstreamFailure;
use super::pool::UpstreamConn;
use crate::config::UpstreamTlsConfig;
use crate::net::stream;
use crate::tls::stream::handshake;
use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Connects to a backend, and for a TLS group completes the handshake (each step within `limit`).
/// Nothing of the request has been sent when this fails, so another backend may be tried.
pub async fn connect(
    address: SocketAddr,
    tls: Option<&UpstreamTlsConfig>,
    limit: Duration,
) -> Result<UpstreamConn, UpstreamFailure> {
    let tcp = connect_tcp(address, limit).await?;
    let fd = tcp.as_raw_fd();
    let Some(tls) = tls else {
        return Ok(UpstreamConn::new(fd, stream::plain(tcp)));
    };
    let name = tls
        .server_name
        .clone()
        .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()));
    let client = rustls::ClientConnection::new(tls.rustls.clone(), name)
        .map_err(|e| UpstreamFailure::Tls(e.to_string()))?;
    match monoio::time::timeout(limit, handshake(tcp, client.into())).await {
        Ok(Ok(halves)) => Ok(UpstreamConn::new(fd, stream::tls(halves))),
        Ok(Err(e)) => Err(UpstreamFailure::Tls(e.to_string())),
        Err(_) => Err(UpstreamFailure::TlsTimeout(limit)),
    }
}

/// A TCP connection to a backend (`TCP_NODELAY` set), within `limit`.
pub async fn connect_tcp(
    address: SocketAddr,
    limit: Duration,
) -> Result<TcpStream, UpstreamFailure> {
    let tcp = match monoio::time::timeout(limit, TcpStream::connect_addr(address)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(UpstreamFailure::from_connect_error(e)),
        Err(_) => return Err(UpstreamFailure::ConnectTimeout(limit)),
    };
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}
