//! Reaching the primary from the standby: at the address given at pairing, or where the
//! homeserver's record points, over PubkyTLS (checked against the homeserver key), with
//! the replication token; the replies of `/standby/v1/` (`super::wire`).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::wire::{Batch, MAX_BATCH, PREFIX};
use crate::announce::dht::DhtClient;
use crate::client::Homeserver;
use crate::pubkey::PublicKey;

/// Reaching the primary: at its fixed address, or where its record points.
pub struct Link {
    key: PublicKey,
    at: Option<SocketAddr>,
    dht: Option<DhtClient>,
    token: String,
    found: Mutex<Option<Homeserver>>,
    /// When the primary last answered anything (an automatic promotion counts from it).
    answered: Mutex<Instant>,
}

impl Link {
    pub fn new(
        key: PublicKey,
        at: Option<SocketAddr>,
        dht: Option<DhtClient>,
        token: &str,
    ) -> Link {
        Link {
            key,
            at,
            dht,
            token: token.to_string(),
            found: Mutex::new(None),
            answered: Mutex::new(Instant::now()),
        }
    }

    /// How long since the primary last answered.
    pub fn silent_for(&self) -> Duration {
        self.answered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    pub(super) async fn primary(&self) -> Result<Homeserver> {
        if let Some(at) = self.at {
            return Ok(Homeserver::at(self.key, at));
        }
        if let Some(h) = self.found.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(h);
        }
        let dht = self
            .dht
            .as_ref()
            .context("the primary's address is not known: pair with --at, or turn the DHT on")?;
        let h = Homeserver::locate(dht, self.key).await?;
        *self.found.lock().unwrap_or_else(|e| e.into_inner()) = Some(h.clone());
        Ok(h)
    }

    /// One GET under `/standby/v1/`; the reply to read. A failure forgets the address.
    pub(super) async fn get(
        &self,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<crate::runtime::http1::Reply> {
        let h = self.primary().await?;
        let auth = format!("Bearer {}", self.token);
        let path = format!("{PREFIX}{path}");
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let r = smol::unblock(move || {
            let hs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            h.call_small("GET", &path, &hs, b"")
        })
        .await;
        match r {
            Ok(r) => {
                *self.answered.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                if r.status == 401 {
                    bail!("the primary refused the replication token (unpaired?)");
                }
                Ok(r)
            }
            Err(e) => {
                *self.found.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Err(e)
            }
        }
    }

    /// The next batch of the log after `after`, waiting up to `wait_ms` for one.
    pub async fn events(&self, after: u64, wait_ms: u64) -> Result<Batch> {
        let r = self
            .get(
                &format!("events?after={after}&limit={MAX_BATCH}&wait_ms={wait_ms}"),
                &[],
            )
            .await?;
        if r.status != 200 {
            bail!("the primary answered {} to a batch of events", r.status);
        }
        let bytes = smol::unblock(move || r.read_all()).await?;
        postcard::from_bytes(&bytes).map_err(|e| anyhow!("a malformed batch: {e}"))
    }

    /// Fetches blob `hash` into `tmp_dir`, checked against its hash; `None` when the
    /// primary no longer holds it.
    pub async fn blob(&self, hash: &[u8; 32], tmp_dir: &Path) -> Result<Option<PathBuf>> {
        let hex = crate::store::to_hex(hash);
        let r = self.get(&format!("blob/{hex}"), &[]).await?;
        match r.status {
            200 => {}
            404 => return Ok(None),
            s => bail!("the primary answered {s} for blob {hex}"),
        }
        let tmp = tmp_dir.join(format!("standby-{hex}"));
        let want = *hash;
        smol::unblock(move || {
            let mut r = r;
            let mut f = std::fs::File::create(&tmp)?;
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                f.write_all(&buf[..n])?;
            }
            f.sync_all()?;
            if *hasher.finalize().as_bytes() != want {
                let _ = std::fs::remove_file(&tmp);
                bail!("blob {} arrived damaged", crate::store::to_hex(&want));
            }
            Ok(Some(tmp))
        })
        .await
    }
}
