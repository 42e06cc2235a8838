//! This box as a client of another homeserver: found through the DHT by its key (or by a
//! user's `_pubky` record), reached over PubkyTLS and checked against that key, one
//! HTTP/1.1 request per connection (`runtime::http1`). `pubky-edge move` signs users in
//! through it; the updater reads the release key's files through it.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::announce::dht::DhtClient;
use crate::announce::packet;
use crate::pubkey::PublicKey;
use crate::runtime::http1;

/// A homeserver reached over PubkyTLS, checked against its key.
#[derive(Clone)]
pub struct Homeserver {
    pub(crate) key: PublicKey,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl Homeserver {
    /// The homeserver `key`, at the address and port its record names.
    pub async fn locate(dht: &DhtClient, key: PublicKey) -> Result<Homeserver> {
        let packet = dht
            .get(&key)
            .await
            .with_context(|| format!("homeserver {key} has no record on the DHT"))?;
        let (ip, port) = packet::direct_endpoint(&packet);
        let (Some(ip), Some(port)) = (ip, port) else {
            bail!("homeserver {key}'s record names no address and PubkyTLS port");
        };
        Ok(Homeserver {
            key,
            addr: SocketAddr::new(ip, port),
            tls: crate::tls::client_config(&key),
        })
    }

    /// The homeserver `key` at a known PubkyTLS address (still checked against the key).
    pub fn at(key: PublicKey, addr: SocketAddr) -> Homeserver {
        Homeserver {
            key,
            addr,
            tls: crate::tls::client_config(&key),
        }
    }

    /// The homeserver `user`'s `_pubky` record points to.
    pub async fn of_user(dht: &DhtClient, user: PublicKey) -> Result<Homeserver> {
        let packet = dht
            .get(&user)
            .await
            .with_context(|| format!("{user} has no record on the DHT"))?;
        let hs = packet::homeserver_of(&packet)
            .with_context(|| format!("{user}'s record names no homeserver"))?;
        Self::locate(dht, hs).await
    }

    pub fn key(&self) -> PublicKey {
        self.key
    }

    /// One request over PubkyTLS, the body read from `body` (`len` bytes) as it is sent.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &mut dyn Read,
        len: u64,
    ) -> Result<http1::Reply> {
        let tcp = http1::connect(self.addr, Duration::from_secs(60))?;
        let name = rustls::pki_types::ServerName::try_from(self.key.to_string())
            .map_err(|e| anyhow!("{e}"))?;
        let conn = rustls::ClientConnection::new(self.tls.clone(), name)?;
        let stream = rustls::StreamOwned::new(conn, tcp);
        let call = http1::Call {
            method,
            path,
            headers,
            body: b"",
        };
        http1::call_streaming(Box::new(stream), &self.key.to_string(), &call, body, len)
            .with_context(|| format!("{method} {path} on homeserver {}", self.key))
    }

    /// GETs `user`'s file at `path`: the reply to read the body from, or `None` when there
    /// is no such file.
    pub fn get_from(&self, user: &PublicKey, path: &str) -> Result<Option<http1::Reply>> {
        let user = user.to_string();
        let reply = self.call_small("GET", path, &[("pubky-host", &user)], b"")?;
        match reply.status {
            200 => Ok(Some(reply)),
            404 => Ok(None),
            s => bail!("GET {path} on homeserver {} answered {s}", self.key),
        }
    }

    /// A request whose body is small and in memory.
    pub fn call_small(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<http1::Reply> {
        self.call(method, path, headers, &mut &body[..], body.len() as u64)
    }
}
