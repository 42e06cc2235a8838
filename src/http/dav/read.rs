//! `PROPFIND` (Depth 0 and 1, streamed a page at a time) and `GET`/`HEAD` (a file, or an
//! HTML index of a folder) over the WebDAV tree.

use bytes::Bytes;
use hyper::{header, Response, StatusCode};

use super::super::body::Body;
use super::super::lock::xml_escape;
use super::super::response::ApiError;
use super::super::App;
use super::{as_dir, as_file, href, known_user, node, Node, Target, PAGE, PREFIX};
use crate::clock;
use crate::pubkey::PublicKey;
use crate::storage_path::StoragePath;
use crate::store::{Content, EntryMeta, ListOptions, StoreError};

/// One `<D:response>` for a file or folder.
fn response_xml(out: &mut String, href: &str, name: &str, meta: Option<&EntryMeta>) {
    out.push_str("<D:response><D:href>");
    out.push_str(&xml_escape(href));
    out.push_str("</D:href><D:propstat><D:prop><D:displayname>");
    out.push_str(&xml_escape(name));
    out.push_str("</D:displayname>");
    match meta {
        None => out.push_str("<D:resourcetype><D:collection/></D:resourcetype>"),
        Some(m) => {
            let modified = httpdate::fmt_http_date(clock::system_time(m.modified_at));
            out.push_str(&format!(
                "<D:resourcetype/><D:getcontentlength>{}</D:getcontentlength>\
                 <D:getcontenttype>{}</D:getcontenttype>\
                 <D:getlastmodified>{modified}</D:getlastmodified>\
                 <D:getetag>{}</D:getetag>",
                m.len,
                xml_escape(&m.content_type),
                xml_escape(&super::super::storage::etag(&m.hash)),
            ));
        }
    }
    out.push_str("</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>");
}

const MULTISTATUS_HEAD: &str =
    r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:">"#;
const MULTISTATUS_TAIL: &str = "</D:multistatus>";

fn multistatus(body: Body) -> Result<Response<Body>, ApiError> {
    Response::builder()
        .status(StatusCode::MULTI_STATUS)
        .header(header::CONTENT_TYPE, "application/xml; charset=utf-8")
        .body(body)
        .map_err(super::super::response::internal)
}

fn last_segment(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

pub(super) fn propfind(app: &App, t: &Target, depth: u8) -> Result<Response<Body>, ApiError> {
    let mut out = String::from(MULTISTATUS_HEAD);
    match t {
        Target::Root => {
            response_xml(&mut out, &format!("{PREFIX}/"), "dav", None);
            if depth == 1 {
                for (pk, _) in app.store.users()? {
                    response_xml(&mut out, &format!("{PREFIX}/{pk}/"), &pk.to_z32(), None);
                }
            }
        }
        Target::User(user) => {
            known_user(app, user)?;
            response_xml(&mut out, &href(user, "/"), &user.to_z32(), None);
            if depth == 1 {
                for root in ["/pub/", "/priv/"] {
                    response_xml(&mut out, &href(user, root), last_segment(root), None);
                }
            }
        }
        Target::Path(user, path) => {
            known_user(app, user)?;
            match node(app, user, path)?.ok_or_else(ApiError::not_found)? {
                Node::File(meta) => {
                    let file = as_file(path).ok_or_else(ApiError::not_found)?;
                    let name = last_segment(file.as_str());
                    response_xml(&mut out, &href(user, file.as_str()), name, Some(&meta));
                }
                Node::Folder => {
                    let dir = as_dir(path).ok_or_else(ApiError::not_found)?;
                    let name = last_segment(dir.as_str());
                    response_xml(&mut out, &href(user, dir.as_str()), name, None);
                    if depth == 1 {
                        return multistatus(Body::Stream(folder_stream(
                            app,
                            *user,
                            dir,
                            out,
                            Style::Xml,
                        )));
                    }
                }
            }
        }
    }
    out.push_str(MULTISTATUS_TAIL);
    multistatus(Body::Full(out.into()))
}

#[derive(Clone, Copy)]
enum Style {
    Xml,
    Html,
}

/// A folder's children, a page at a time, after `head` and before the closing tail: the
/// remembered empty folders first, then what the store lists.
fn folder_stream(
    app: &App,
    user: PublicKey,
    dir: StoragePath,
    head: String,
    style: Style,
) -> super::super::body::ChunkStream {
    struct State {
        store: crate::store::Store,
        user: PublicKey,
        dir: StoragePath,
        cursor: Option<String>,
        pending: Option<String>,
        done: bool,
    }
    let mut first = head;
    for d in app.dav_folders.children(&user, dir.as_str()) {
        child(&mut first, &user, &d, None, style);
    }
    let state = State {
        store: app.store.clone(),
        user,
        dir,
        cursor: None,
        pending: Some(first),
        done: false,
    };
    Box::pin(smol::stream::unfold(state, move |mut s| async move {
        if let Some(p) = s.pending.take() {
            return Some((Ok(Bytes::from(p)), s));
        }
        if s.done {
            return None;
        }
        let opts = ListOptions {
            limit: PAGE,
            cursor: s.cursor.clone(),
            reverse: false,
            shallow: true,
        };
        let mut out = String::new();
        let page = match s.store.list(&s.user, &s.dir, &opts) {
            Ok(p) => p,
            Err(StoreError::NotFound) => Vec::new(),
            Err(e) => return Some((Err(std::io::Error::other(e.to_string())), s)),
        };
        for p in &page {
            let path = p.as_str();
            let meta = if path.ends_with('/') {
                None
            } else {
                match StoragePath::strict(path).map(|sp| s.store.entry(&s.user, &sp)) {
                    Ok(Ok(Some(m))) => Some(m),
                    // Deleted between the listing and now: leave it out.
                    _ => continue,
                }
            };
            child(&mut out, &s.user, path, meta.as_ref(), style);
        }
        s.cursor = page.last().cloned();
        if page.len() < PAGE {
            s.done = true;
            out.push_str(match style {
                Style::Xml => MULTISTATUS_TAIL,
                Style::Html => "</ul></body></html>\n",
            });
        }
        Some((Ok(Bytes::from(out)), s))
    }))
}

fn child(out: &mut String, user: &PublicKey, path: &str, meta: Option<&EntryMeta>, s: Style) {
    let name = last_segment(path);
    match s {
        Style::Xml => response_xml(out, &href(user, path), name, meta),
        Style::Html => {
            let slash = if path.ends_with('/') { "/" } else { "" };
            out.push_str(&format!(
                "<li><a href=\"{}\">{}{slash}</a></li>",
                xml_escape(&href(user, path)),
                xml_escape(name)
            ));
        }
    }
}

pub(super) fn get(app: &App, t: &Target, head_only: bool) -> Result<Response<Body>, ApiError> {
    let html = |title: &str| {
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title></head>\
             <body><h1>{0}</h1><ul>",
            xml_escape(title)
        )
    };
    let page = |body: Body| {
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(if head_only { Body::Empty } else { body })
            .map_err(super::super::response::internal)
    };
    match t {
        Target::Root => {
            let mut out = html("Users");
            for (pk, _) in app.store.users()? {
                let z = pk.to_z32();
                out.push_str(&format!("<li><a href=\"{PREFIX}/{z}/\">{z}/</a></li>"));
            }
            out.push_str("</ul></body></html>\n");
            page(Body::Full(out.into()))
        }
        Target::User(user) => {
            known_user(app, user)?;
            let mut out = html(&user.to_z32());
            for root in ["pub", "priv"] {
                out.push_str(&format!("<li><a href=\"{root}/\">{root}/</a></li>"));
            }
            out.push_str("</ul></body></html>\n");
            page(Body::Full(out.into()))
        }
        Target::Path(user, path) => match node(app, user, path)? {
            None => Err(ApiError::not_found()),
            Some(Node::Folder) => {
                let dir = as_dir(path).ok_or_else(ApiError::not_found)?;
                let head = html(&format!("{user}{}", dir.as_str()));
                page(Body::Stream(folder_stream(
                    app,
                    *user,
                    dir,
                    head,
                    Style::Html,
                )))
            }
            Some(Node::File(_)) => {
                let file = as_file(path).ok_or_else(ApiError::not_found)?;
                let (meta, content) = app
                    .store
                    .read(user, &file)?
                    .ok_or_else(ApiError::not_found)?;
                let body = match (head_only, content) {
                    (true, _) => Body::Empty,
                    (false, Content::Inline(b)) => Body::Full(b),
                    (false, Content::File(f)) => Body::file(f, meta.len),
                };
                let mut r = Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, meta.content_type.as_str())
                    .header(header::ETAG, super::super::storage::etag(&meta.hash))
                    .header(
                        header::LAST_MODIFIED,
                        httpdate::fmt_http_date(clock::system_time(meta.modified_at)),
                    )
                    .body(body)
                    .map_err(super::super::response::internal)?;
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, header::HeaderValue::from(meta.len));
                Ok(r)
            }
        },
    }
}
