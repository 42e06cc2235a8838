//! The HTTP server's PubkyTLS accept side, over the server config of [`crate::tls`].

use std::io;
use std::sync::Arc;

use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;
use rustls::ServerConfig;
use smol::net::TcpStream;

use super::server::Acceptor;

/// The accept-side of PubkyTLS for [`super::server::serve`]: the handshake runs in the connection's
/// own task under the header-read timeout, so a stalled or malformed handshake costs one
/// connection slot for a bounded time and nothing else.
#[derive(Clone)]
pub struct PubkyTls {
    acceptor: TlsAcceptor,
}

impl PubkyTls {
    pub fn new(config: Arc<ServerConfig>) -> PubkyTls {
        PubkyTls {
            acceptor: TlsAcceptor::from(config),
        }
    }
}

impl Acceptor for PubkyTls {
    type Stream = TlsStream<TcpStream>;

    fn is_tls(&self) -> bool {
        true
    }

    async fn accept(&self, tcp: TcpStream) -> io::Result<Self::Stream> {
        self.acceptor.accept(tcp).await
    }
}
