//! The move's side of a homeserver (`crate::client::Homeserver`: found through the DHT,
//! reached over PubkyTLS and checked against its key): signing up and in with a grant, and
//! a user signed in there ([`Session`]): listing, streaming downloads and uploads, deletes.

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use ed25519_dalek::SigningKey;

use crate::auth::capability::Capabilities;
use crate::backup::point::copy_hashed;
pub(super) use crate::client::Homeserver;
use crate::pubkey::PublicKey;
use crate::runtime::http1;
use crate::storage_path::percent_encode_path;

/// A signed-in user on a homeserver.
pub(super) struct Session<'a> {
    hs: &'a Homeserver,
    user: PublicKey,
    bearer: Option<String>,
}

impl Homeserver {
    /// A grant for `user` (all of `/`, read-write) to `client_id` for `lifetime` seconds,
    /// with a fresh client key's proof.
    pub(super) fn grant_body(&self, user: &SigningKey, client_id: &str, lifetime: u64) -> String {
        let mut seed = [0u8; 32];
        // Invariant: the OS random source is available on every supported platform.
        getrandom::fill(&mut seed).expect("OS randomness");
        let client = SigningKey::from_bytes(&seed);
        // Invariant: the literal is a valid capability list.
        let caps = Capabilities::parse("/:rw").expect("root capability");
        crate::auth::mint::client_request_body(
            user,
            &client,
            self.key,
            client_id,
            caps,
            crate::clock::now_secs(),
            lifetime,
        )
    }

    pub(super) fn sign_in<'a>(&'a self, user: &SigningKey) -> Result<Session<'a>> {
        let json = [("content-type", "application/json")];
        let body = self.grant_body(user, "pubky-edge.move", 24 * 3600);
        let r = self.call_small("POST", "/auth/grant/session", &json, body.as_bytes())?;
        let status = r.status;
        let body = r.read_all()?;
        if status != 200 {
            bail!(
                "homeserver {} refused the sign-in ({status}): {}",
                self.key,
                String::from_utf8_lossy(&body)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let bearer = v["token"]
            .as_str()
            .context("no token in the session answer")?;
        Ok(Session {
            hs: self,
            user: PublicKey::from(user.verifying_key()),
            bearer: Some(bearer.to_string()),
        })
    }

    /// Signs up (an account already there is fine: a resumed move) and signs in.
    pub(super) fn sign_up<'a>(
        &'a self,
        user: &SigningKey,
        token: Option<&str>,
    ) -> Result<Session<'a>> {
        let path = match token {
            Some(t) => format!("/auth/grant/signup?signup_token={t}"),
            None => "/auth/grant/signup".into(),
        };
        let json = [("content-type", "application/json")];
        // A signup grant: the protocol's own client id and a short life.
        let body = self.grant_body(
            user,
            crate::auth::grant::SIGNUP_CLIENT_ID,
            crate::auth::grant::MAX_SIGNUP_LIFETIME_SECS,
        );
        let r = self.call_small("POST", &path, &json, body.as_bytes())?;
        let status = r.status;
        let body = String::from_utf8_lossy(&r.read_all()?).into_owned();
        match status {
            200..=299 | 409 => self.sign_in(user),
            _ => bail!(
                "homeserver {} refused the sign-up ({status}): {body}{}",
                self.key,
                if token.is_none() {
                    " (does it need --signup-token?)"
                } else {
                    ""
                }
            ),
        }
    }
}

impl Session<'_> {
    /// A request as this user; `target` is the percent-encoded path (and query).
    pub(super) fn call(
        &self,
        method: &str,
        target: &str,
        extra: &[(&str, &str)],
        body: &mut dyn Read,
        len: u64,
    ) -> Result<http1::Reply> {
        let user = self.user.to_string();
        let auth = self.bearer.as_ref().map(|b| format!("Bearer {b}"));
        let mut headers = vec![("pubky-host", user.as_str())];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        headers.extend_from_slice(extra);
        self.hs.call(method, target, &headers, body, len)
    }

    /// A request as this user without a body.
    pub(super) fn call_empty(&self, method: &str, target: &str) -> Result<http1::Reply> {
        self.call(method, target, &[], &mut std::io::empty(), 0)
    }

    /// Every file under `dir` (`/pub/` or `/priv/`), following the listing's cursor (the
    /// last `pubky://<user><path>` line of the page before).
    pub(super) fn list(&self, dir: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let prefix = format!("pubky://{}", self.user);
        let mut cursor: Option<String> = None;
        loop {
            let mut target = format!("{}?limit=500", percent_encode_path(dir));
            if let Some(c) = &cursor {
                target.push_str(&format!("&cursor={}", percent_encode_path(c)));
            }
            let r = self.call_empty("GET", &target)?;
            let status = r.status;
            let text = String::from_utf8_lossy(&r.read_all()?).into_owned();
            match status {
                200 => {}
                404 => return Ok(out),
                s => bail!("listing {dir} on {} answered {s}: {text}", self.hs.key),
            }
            let page: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
            let Some(last) = page.last() else {
                return Ok(out);
            };
            cursor = Some(last.to_string());
            for line in page {
                let raw = &line[prefix.len()..];
                out.push(crate::storage_path::percent_decode(raw).unwrap_or_else(|_| raw.into()));
            }
        }
    }

    /// Streams a file into `out`: its size, BLAKE3 and content type.
    pub(super) fn download(
        &self,
        path: &str,
        out: &mut dyn Write,
    ) -> Result<(u64, String, String)> {
        let mut r = self.call_empty("GET", &percent_encode_path(path))?;
        if r.status != 200 {
            bail!("GET {path} on {} answered {}", self.hs.key, r.status);
        }
        let ct = r
            .header("content-type")
            .unwrap_or("application/octet-stream")
            .to_string();
        let (size, hash) = copy_hashed(&mut r, out)?;
        Ok((size, hash, ct))
    }

    /// Streams `len` bytes of `body` to `path`.
    pub(super) fn upload(
        &self,
        path: &str,
        body: &mut dyn Read,
        len: u64,
        content_type: &str,
    ) -> Result<()> {
        let target = percent_encode_path(path);
        let r = self.call("PUT", &target, &[("content-type", content_type)], body, len)?;
        match r.status {
            200..=299 => Ok(()),
            s => bail!(
                "PUT {path} on {} answered {s}: {}",
                self.hs.key,
                String::from_utf8_lossy(&r.read_all()?)
            ),
        }
    }

    pub(super) fn delete(&self, path: &str) -> Result<()> {
        match self
            .call_empty("DELETE", &percent_encode_path(path))?
            .status
        {
            200..=299 | 404 => Ok(()),
            s => bail!("DELETE {path} on {} answered {s}", self.hs.key),
        }
    }
}
