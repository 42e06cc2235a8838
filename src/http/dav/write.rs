//! The WebDAV methods that change files: `PUT`, `DELETE` (folders recursively), `MKCOL`,
//! `COPY` and `MOVE`, each write an ordinary store commit (quota, event, durability).

use hyper::body::Incoming;
use hyper::{header, Request, Response, StatusCode};

use super::super::body::{read_limited, Body, BodyError};
use super::super::response::ApiError;
use super::super::App;
use super::{as_dir, as_file, known_user, node, Node, Target};
use crate::clock;
use crate::pubkey::PublicKey;
use crate::storage_path::StoragePath;
use crate::store::{Content, ListOptions, StoreError};

/// A writable file path: inside `/pub/` or `/priv/`, not a folder.
fn writable(t: &Target) -> Result<(PublicKey, StoragePath), ApiError> {
    match t {
        Target::Path(user, path) if !path.is_dir() && (path.is_public() || path.is_private()) => {
            Ok((*user, path.clone()))
        }
        Target::Path(..) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only files inside pub/ and priv/ can be written",
        )),
        _ => Err(ApiError::forbidden(
            "Only files inside pub/ and priv/ can be written",
        )),
    }
}

pub(super) async fn put(
    app: &App,
    t: &Target,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (user, path) = writable(t)?;
    known_user(app, &user)?;
    if matches!(node(app, &user, &path)?, Some(Node::Folder)) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "A folder is there",
        ));
    }
    let existed = app.store.entry(&user, &path)?.is_some();
    let allowance = app.store.write_allowance(&user, &path)?;
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    super::super::storage::precheck(app, allowance, length)?;
    let (staged, content_type) =
        super::super::storage::receive(app, req.into_body(), &path, allowance, None).await?;
    app.store
        .put(&user, &path, staged, &content_type, clock::now_micros())
        .await?;
    app.dav_folders.forget_around(&user, path.as_str());
    tracing::info!(user = %user, path = %path, "admin wrote a file over WebDAV");
    Ok(created_or_replaced(existed))
}

fn created_or_replaced(existed: bool) -> Response<Body> {
    let status = if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    };
    super::super::response::empty(status)
}

/// Every file at or under `path` (a file alone, or a folder's files), in key order.
fn files_under(
    app: &App,
    user: &PublicKey,
    path: &StoragePath,
) -> Result<Vec<StoragePath>, ApiError> {
    if let Some(file) = as_file(path) {
        if app.store.entry(user, &file)?.is_some() {
            return Ok(vec![file]);
        }
    }
    let Some(dir) = as_dir(path) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let opts = ListOptions {
            limit: 1000,
            cursor,
            reverse: false,
            shallow: false,
        };
        let page = match app.store.list(user, &dir, &opts) {
            Ok(p) => p,
            Err(StoreError::NotFound) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        for p in &page {
            out.push(StoragePath::strict(p).map_err(|e| ApiError::bad_request(e.to_string()))?);
        }
        if page.len() < 1000 {
            return Ok(out);
        }
        cursor = page.last().cloned();
    }
}

pub(super) async fn delete(app: &App, t: &Target) -> Result<Response<Body>, ApiError> {
    let Target::Path(user, path) = t else {
        return Err(ApiError::forbidden(
            "Users are deleted elsewhere, not over WebDAV",
        ));
    };
    if matches!(path.as_str(), "/pub/" | "/pub" | "/priv/" | "/priv") {
        return Err(ApiError::forbidden("pub/ and priv/ cannot be deleted"));
    }
    let node = node(app, user, path)?.ok_or_else(ApiError::not_found)?;
    let files = files_under(app, user, path)?;
    for f in &files {
        app.store.delete(user, f, clock::now_micros()).await?;
    }
    if matches!(node, Node::Folder) {
        app.dav_folders.forget_around(user, path.as_str());
    }
    tracing::info!(user = %user, path = %path, files = files.len(), "admin deleted over WebDAV");
    Ok(super::super::response::empty(StatusCode::NO_CONTENT))
}

pub(super) async fn mkcol(
    app: &App,
    t: &Target,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let Target::Path(user, path) = t else {
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "It exists"));
    };
    known_user(app, user)?;
    let body = read_limited(req.into_body(), 1, app.config.limits.body_pace).await;
    if matches!(body, Err(BodyError::TooLarge)) || body.is_ok_and(|b| !b.is_empty()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "MKCOL takes no body",
        ));
    }
    let dir = as_dir(path).ok_or_else(|| ApiError::bad_request("Invalid folder"))?;
    if node(app, user, &dir)?.is_some() {
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "It exists"));
    }
    // A file where a parent folder would be: the folder cannot exist (RFC 4918 9.3.1).
    for anc in dir.ancestors() {
        if let Some(f) = as_file(&StoragePath::strict(anc).map_err(|_| ApiError::not_found())?) {
            if app.store.entry(user, &f)?.is_some() {
                return Err(ApiError::new(StatusCode::CONFLICT, "A parent is a file"));
            }
        }
    }
    if !app.dav_folders.insert(user, dir.as_str()) {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "Too many empty folders; put files in some first",
        ));
    }
    Ok(super::super::response::empty(StatusCode::CREATED))
}

pub(super) async fn copy(
    app: &App,
    from: &Target,
    to: &Target,
    overwrite: bool,
    remove_source: bool,
) -> Result<Response<Body>, ApiError> {
    let (Target::Path(src_user, src), Target::Path(dst_user, dst)) = (from, to) else {
        return Err(ApiError::forbidden(
            "Only files and folders inside pub/ and priv/ move",
        ));
    };
    known_user(app, dst_user)?;
    let Some(src_node) = node(app, src_user, src)? else {
        return Err(ApiError::not_found());
    };
    let folder = matches!(src_node, Node::Folder);
    let (src_base, dst_base) = if folder {
        let s = as_dir(src).ok_or_else(ApiError::not_found)?;
        let d = as_dir(dst).ok_or_else(|| ApiError::bad_request("Invalid Destination"))?;
        (s, d)
    } else {
        let d = as_file(dst).ok_or_else(|| ApiError::bad_request("Invalid Destination"))?;
        (as_file(src).ok_or_else(ApiError::not_found)?, d)
    };
    if src_user == dst_user
        && (src_base == dst_base || (folder && dst_base.as_str().starts_with(src_base.as_str())))
    {
        return Err(ApiError::forbidden("Source and destination overlap"));
    }
    if !(dst_base.is_public() || dst_base.is_private())
        || matches!(dst_base.as_str(), "/pub/" | "/priv/")
    {
        return Err(ApiError::forbidden(
            "The destination must be inside pub/ or priv/",
        ));
    }
    let existed = node(app, dst_user, &dst_base)?.is_some();
    if existed && !overwrite {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "The destination exists and Overwrite is F",
        ));
    }
    if existed {
        for f in files_under(app, dst_user, &dst_base)? {
            app.store.delete(dst_user, &f, clock::now_micros()).await?;
        }
    }
    for f in files_under(app, src_user, &src_base)? {
        let suffix = &f.as_str()[src_base.as_str().len()..];
        let target = StoragePath::strict(&format!("{}{suffix}", dst_base.as_str()))
            .map_err(|e| ApiError::bad_request(format!("Invalid Destination: {e}")))?;
        copy_file(app, src_user, &f, dst_user, &target).await?;
        if remove_source {
            app.store.delete(src_user, &f, clock::now_micros()).await?;
        }
    }
    app.dav_folders.forget_around(dst_user, dst_base.as_str());
    if remove_source && folder {
        app.dav_folders.forget_around(src_user, src_base.as_str());
    }
    tracing::info!(from = %src_base, to = %dst_base, moved = remove_source, "admin copied over WebDAV");
    Ok(created_or_replaced(existed))
}

/// One file's bytes and type to another path (its own commit, quota and event).
async fn copy_file(
    app: &App,
    from_user: &PublicKey,
    from: &StoragePath,
    to_user: &PublicKey,
    to: &StoragePath,
) -> Result<(), ApiError> {
    let (meta, content) = app
        .store
        .read(from_user, from)?
        .ok_or_else(ApiError::not_found)?;
    if app
        .store
        .write_allowance(to_user, to)?
        .is_some_and(|a| meta.len > a)
    {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "Disk space quota exceeded",
        ));
    }
    let mut upload = app.store.upload();
    match content {
        Content::Inline(b) => upload.write(&b).await?,
        Content::File(f) => {
            // The same off-thread, read-ahead chunks a GET streams.
            let mut file = super::super::body::FileBody::new(f, meta.len);
            while let Some(chunk) = file.next_chunk().await {
                let chunk = chunk.map_err(|e| ApiError::from(StoreError::from(e)))?;
                upload.write(&chunk).await?;
            }
        }
    }
    let staged = upload.finish().await?;
    app.store
        .put(to_user, to, staged, &meta.content_type, clock::now_micros())
        .await?;
    Ok(())
}
