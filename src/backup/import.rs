//! `pubky-edge import --from-webdav URL --admin-password …`: moves a whole homeserver in
//! from the reference homeserver's admin WebDAV (`/dav/<user z32>/pub/…`), user by user,
//! into this box's store (the server stopped). With the reference's `secret` copied into
//! the data directory first, the box is the same homeserver and every user's `_pubky`
//! record stays valid. A file already here with the same size is skipped, so an
//! interrupted import is run again to resume; each copied file is checked against the size
//! WebDAV announced.

use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;

use crate::pubkey::PublicKey;
use crate::runtime::http1;
use crate::storage_path::{percent_decode, percent_encode_path, StoragePath};
use crate::store::{Store, StoreError};

/// A WebDAV server to read from.
pub struct Source {
    addr: SocketAddr,
    host: String,
    /// The collection that lists users, ending in `/` (e.g. `/dav/`).
    base: String,
    auth: String,
}

impl Source {
    /// `http://host:port/dav/` and the admin password (user `admin`).
    pub fn new(url: &str, password: &str) -> Result<Source> {
        let rest = url
            .strip_prefix("http://")
            .context("the WebDAV URL must start with http:// (the admin listener's)")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let with_port = if host
            .rsplit(':')
            .next()
            .is_some_and(|p| p.parse::<u16>().is_ok())
            && !host.ends_with(']')
        {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        let mut base = if path.is_empty() {
            "/dav/".to_string()
        } else {
            path.to_string()
        };
        if !base.ends_with('/') {
            base.push('/');
        }
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"));
        Ok(Source {
            addr,
            host: host.to_string(),
            base,
            auth: format!("Basic {auth}"),
        })
    }

    fn call(&self, method: &str, path: &str, depth: Option<&str>) -> Result<http1::Reply> {
        let mut headers = vec![("authorization", self.auth.as_str())];
        if let Some(d) = depth {
            headers.push(("depth", d));
            headers.push(("content-type", "application/xml"));
        }
        let body: &[u8] = if depth.is_some() { PROPFIND } else { b"" };
        let r = http1::call(
            self.addr,
            &self.host,
            &http1::Call {
                method,
                path,
                headers: &headers,
                body,
            },
            Duration::from_secs(60),
        )?;
        match r.status {
            401 => bail!("the WebDAV server refused the admin password"),
            s if !(200..300).contains(&s) => {
                bail!("{method} {path}: the WebDAV server answered {s}")
            }
            _ => Ok(r),
        }
    }

    /// The members of a collection (the collection itself left out).
    fn list(&self, path: &str) -> Result<Vec<Item>> {
        let xml = self
            .call("PROPFIND", &percent_encode_path(path), Some("1"))?
            .read_all()?;
        let xml = String::from_utf8_lossy(&xml);
        let own = path.trim_end_matches('/');
        Ok(parse_multistatus(&xml)
            .into_iter()
            .filter(|i| i.path.trim_end_matches('/') != own)
            .collect())
    }
}

const PROPFIND: &[u8] = br#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getcontenttype/></D:prop></D:propfind>"#;

/// One member of a PROPFIND answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Decoded path on the server.
    pub path: String,
    pub collection: bool,
    pub length: Option<u64>,
    pub content_type: Option<String>,
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Reads a `multistatus` document leniently: elements by local name, any prefix.
pub fn parse_multistatus(xml: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut cur: Option<Item> = None;
    let mut open = String::new();
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        let Some(gt) = rest[lt..].find('>') else {
            break;
        };
        let tag = &rest[lt + 1..lt + gt];
        rest = &rest[lt + gt + 1..];
        if let Some(item) = cur.as_mut() {
            let text = unescape(text.trim());
            match open.as_str() {
                "href" if !text.is_empty() => {
                    let path = match text.find("://") {
                        Some(i) => text[i + 3..]
                            .find('/')
                            .map_or("/".to_string(), |p| text[i + 3 + p..].to_string()),
                        None => text,
                    };
                    item.path = percent_decode(&path).unwrap_or(path);
                }
                "getcontentlength" if !text.is_empty() => item.length = text.parse().ok(),
                "getcontenttype" if !text.is_empty() => item.content_type = Some(text),
                _ => {}
            }
        }
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        let closing = tag.starts_with('/');
        let self_closing = tag.ends_with('/');
        let name = tag
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split_whitespace()
            .next()
            .unwrap_or("");
        let local = name.rsplit(':').next().unwrap_or(name).to_ascii_lowercase();
        match (local.as_str(), closing) {
            ("response", false) => {
                cur = Some(Item {
                    path: String::new(),
                    collection: false,
                    length: None,
                    content_type: None,
                })
            }
            ("response", true) => items.extend(cur.take()),
            ("collection", false) => {
                if let Some(i) = cur.as_mut() {
                    i.collection = true;
                }
            }
            _ => {}
        }
        open = if closing || self_closing {
            String::new()
        } else {
            local
        };
    }
    items
}

#[derive(Debug, Default)]
pub struct Imported {
    pub users: usize,
    pub new_users: usize,
    pub files: usize,
    pub skipped: usize,
    pub bytes: u64,
    pub failed: Vec<String>,
}

/// Copies every user's files from `src` into `store`.
pub fn import(store: &Store, src: &Source, mut progress: impl FnMut(&str)) -> Result<Imported> {
    let mut done = Imported::default();
    for u in src.list(&src.base)? {
        let name = u
            .path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("");
        let Ok(pk) = PublicKey::parse_z32(name) else {
            continue;
        };
        if !u.collection {
            continue;
        }
        done.users += 1;
        if store.user(&pk)?.is_none() {
            smol::block_on(store.create_user(&pk, None, crate::clock::now_secs()))?;
            done.new_users += 1;
        }
        progress(&format!("user {pk}"));
        let root = format!("{}{name}", src.base);
        let mut folders = vec![format!("{root}/")];
        while let Some(folder) = folders.pop() {
            for item in src.list(&folder)? {
                if item.collection {
                    folders.push(format!("{}/", item.path.trim_end_matches('/')));
                    continue;
                }
                let Some(rel) = item.path.strip_prefix(&root) else {
                    done.failed.push(format!("{}: outside {root}", item.path));
                    continue;
                };
                match copy_file(store, src, &pk, &item, rel) {
                    Ok(Some(n)) => {
                        done.files += 1;
                        done.bytes += n;
                    }
                    Ok(None) => done.skipped += 1,
                    Err(e) => done.failed.push(format!("{pk}{rel}: {e:#}")),
                }
            }
        }
    }
    Ok(done)
}

/// Copies one file; `None` when it is already here with the announced size.
fn copy_file(
    store: &Store,
    src: &Source,
    pk: &PublicKey,
    item: &Item,
    rel: &str,
) -> Result<Option<u64>> {
    let path = StoragePath::strict(rel).map_err(|e| anyhow::anyhow!("not a Pubky path: {e}"))?;
    if let (Some(have), Some(len)) = (store.entry(pk, &path)?, item.length) {
        if have.len == len {
            return Ok(None);
        }
    }
    let mut r = src.call("GET", &percent_encode_path(&item.path), None)?;
    let content_type = r
        .header("content-type")
        .map(str::to_string)
        .or_else(|| item.content_type.clone())
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut up = store.upload();
    let mut buf = vec![0u8; 64 * 1024];
    smol::block_on(async {
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            up.write(&buf[..n]).await?;
        }
        if let Some(len) = item.length {
            if up.len() != len {
                bail!("{} bytes arrived, WebDAV announced {len}", up.len());
            }
        }
        let n = up.len();
        let staged = up.finish().await?;
        store
            .put(pk, &path, staged, &content_type, crate::clock::now_micros())
            .await
            .map_err(|e: StoreError| anyhow::anyhow!("{e}"))?;
        Ok(Some(n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multistatus_answers_of_either_style_are_read() {
        let ours = r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:"><D:response><D:href>/dav/abc/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response><D:response><D:href>/dav/abc/pub/a%20b.txt</D:href><D:propstat><D:prop><D:resourcetype/><D:getcontentlength>12</D:getcontentlength><D:getcontenttype>text/plain</D:getcontenttype></D:prop></D:propstat></D:response></D:multistatus>"#;
        let items = parse_multistatus(ours);
        assert_eq!(items.len(), 2);
        assert!(items[0].collection);
        assert_eq!(
            items[1],
            Item {
                path: "/dav/abc/pub/a b.txt".into(),
                collection: false,
                length: Some(12),
                content_type: Some("text/plain".into()),
            }
        );
        // other prefixes, absolute hrefs, entities, empty props in a 404 propstat
        let other = "<d:multistatus xmlns:d=\"DAV:\">\n <d:response>\n  <d:href>http://hs:6288/dav/k/pub/x%26y</d:href>\n  <d:propstat><d:prop><d:getcontentlength>3</d:getcontentlength><d:resourcetype></d:resourcetype></d:prop></d:propstat>\n  <d:propstat><d:prop><d:getcontenttype/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>\n </d:response>\n</d:multistatus>";
        let items = parse_multistatus(other);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].path, "/dav/k/pub/x&y");
        assert_eq!(items[0].length, Some(3));
        assert_eq!(items[0].content_type, None);
        assert!(!items[0].collection);
    }

    #[test]
    fn urls_name_the_server_and_the_collection() {
        let s = Source::new("http://127.0.0.1:6288/dav", "pw").unwrap();
        assert_eq!(s.addr, "127.0.0.1:6288".parse().unwrap());
        assert_eq!(s.base, "/dav/");
        assert_eq!(s.auth, "Basic YWRtaW46cHc=");
        assert!(Source::new("https://example.org/dav/", "pw").is_err());
        assert_eq!(
            Source::new("http://127.0.0.1:81", "pw").unwrap().base,
            "/dav/"
        );
    }
}
