//! Everything that becomes a response: `ApiError`, the one place where domain errors
//! (routing, account, auth, store) become HTTP statuses with the spec's plain-text bodies and
//! the one place that logs server-side failures; the small builders every handler uses
//! (`empty`, `text`, `json`, `internal`); and CORS, applied outermost to every response.

use std::borrow::Cow;

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};
use serde::Serialize;

use super::body::Body;
use super::query::BadQuery;
use super::route::RouteError;
use crate::account;
use crate::auth::auth_token::AuthTokenError;
use crate::auth::grant::{GrantError, PopError, SignupGrantError};
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    /// `Allow` header for 405 responses.
    pub allow: Option<&'static str>,
    /// `Retry-After` seconds for 429 and 503 responses.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            message: message.into(),
            allow: None,
            retry_after: None,
        }
    }
    /// 429 "Rate limit exceeded" with `Retry-After`.
    pub fn rate_limited(secs: u64) -> Self {
        ApiError {
            retry_after: Some(secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded")
        }
    }
    pub fn bad_request(m: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn unauthorized(m: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, m)
    }
    pub fn forbidden(m: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, m)
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found")
    }
    pub fn no_session() -> Self {
        Self::unauthorized("No authenticated session found")
    }

    /// The answer. A 500 is the server's own fault: its detail is logged at ERROR and the
    /// client gets a fixed body (internal text can name paths and internals). Other
    /// statuses, 503 and 507 included, are answers to the request and say why.
    pub fn into_response(mut self) -> Response<Body> {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(status = 500, "{}", self.message);
            self.message = Cow::Borrowed("Internal server error");
        } else if self.status.is_server_error() {
            tracing::debug!(status = self.status.as_u16(), "{}", self.message);
        }
        let mut b = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
        if let Some(allow) = self.allow {
            b = b.header(header::ALLOW, allow);
        }
        match self.retry_after {
            Some(secs) => b = b.header(header::RETRY_AFTER, secs),
            None if self.status == StatusCode::TOO_MANY_REQUESTS
                || self.status == StatusCode::SERVICE_UNAVAILABLE =>
            {
                b = b.header(header::RETRY_AFTER, "1")
            }
            None => {}
        }
        let body = Bytes::from(self.message.into_owned());
        // Invariant: status and static header values above are always valid.
        b.body(Body::Full(body)).expect("valid error response")
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::MethodNotAllowed(allow) => ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: "Method Not Allowed".into(),
                allow: Some(allow),
                retry_after: None,
            },
            RouteError::BadRequest(m) => ApiError::bad_request(m),
            RouteError::NotFound => ApiError::not_found(),
        }
    }
}

impl From<account::Error> for ApiError {
    fn from(e: account::Error) -> Self {
        use account::Error as E;
        let status = match e {
            E::Store(s) => return s.into(),
            E::TooManyLocks => {
                return ApiError {
                    retry_after: Some(account::locks::MAX_SECS),
                    ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
                }
            }
            E::Locked => StatusCode::LOCKED,
            E::LockMismatch | E::LockLost => StatusCode::PRECONDITION_FAILED,
            E::NoSuchLock => StatusCode::CONFLICT,
            E::NoSession | E::AuthRequired => StatusCode::UNAUTHORIZED,
            E::OutsideStorage { .. }
            | E::WrongUser
            | E::NoAccess { .. }
            | E::PrivateNeedsOneUser
            | E::Disabled
            | E::PathNotAllowed => StatusCode::FORBIDDEN,
            E::NotAFile | E::TokenRequired => StatusCode::BAD_REQUEST,
            E::UnknownUser => StatusCode::NOT_FOUND,
            E::UserExists => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<account::operator::Refused> for ApiError {
    fn from(r: account::operator::Refused) -> Self {
        use account::operator::Refused;
        match r {
            Refused::Throttled(secs) => ApiError::rate_limited(secs),
            Refused::Missing => ApiError::unauthorized("Missing admin password"),
            Refused::Wrong => ApiError::unauthorized("Invalid admin password"),
        }
    }
}

/// The body mistakes every reader shares; callers word `TooLarge` with their own limit.
impl From<super::body::BodyError> for ApiError {
    fn from(e: super::body::BodyError) -> Self {
        use super::body::BodyError;
        match e {
            BodyError::TooLarge => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Body too large"),
            BodyError::Broken(_) => ApiError::bad_request("Stream broken"),
            BodyError::TooSlow => {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "Request body too slow")
            }
        }
    }
}

impl From<BadQuery> for ApiError {
    fn from(e: BadQuery) -> Self {
        ApiError::bad_request(e.0)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        use StatusCode as S;
        match e {
            StoreError::NotFound | StoreError::UserNotFound => ApiError::not_found(),
            StoreError::Collision => ApiError::new(S::CONFLICT, "File/folder path collision"),
            StoreError::QuotaExceeded => {
                ApiError::new(S::INSUFFICIENT_STORAGE, "Disk space quota exceeded")
            }
            StoreError::DiskFull => ApiError::new(
                S::INSUFFICIENT_STORAGE,
                "The device's disk is full; free space before writing again",
            ),
            StoreError::UserExists => ApiError::new(S::CONFLICT, "User already exists"),
            StoreError::TokenUnknown => ApiError::unauthorized("Invalid token"),
            StoreError::TokenUsed => ApiError::unauthorized("Token already used"),
            StoreError::GrantRevoked => ApiError::unauthorized("Grant has been revoked"),
            StoreError::GrantConflict => {
                ApiError::forbidden("Grant does not belong to authenticated user")
            }
            StoreError::GrantExpired => ApiError::unauthorized("Grant has expired"),
            other => ApiError::new(S::INTERNAL_SERVER_ERROR, format!("Storage error: {other}")),
        }
    }
}

impl From<GrantError> for ApiError {
    fn from(e: GrantError) -> Self {
        let status = match e {
            GrantError::Signature | GrantError::Expired => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<PopError> for ApiError {
    fn from(e: PopError) -> Self {
        ApiError::unauthorized(e.to_string())
    }
}

impl From<SignupGrantError> for ApiError {
    fn from(e: SignupGrantError) -> Self {
        let status = match e {
            SignupGrantError::NotRoot => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<AuthTokenError> for ApiError {
    /// Every AuthToken problem is the client's: 400 with the reference's wording.
    fn from(e: AuthTokenError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// A response with no body.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = status;
    r
}

/// A plain-text response.
pub fn text(status: StatusCode, s: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::Full(s.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON response.
pub fn json(status: StatusCode, v: &impl Serialize) -> Result<Response<Body>, ApiError> {
    let bytes = serde_json::to_vec(v).map_err(internal)?;
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Full(bytes.into()))
        .map_err(internal)
}

/// A 500 for a failure that is the server's own.
pub fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Internal error: {e}"),
    )
}

/// `Cache-Control: no-store`, for answers that must never be reused.
pub fn no_store(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The CORS inputs of a request: its `Origin` and, on a preflight, the requested method
/// and headers.
pub struct CorsRequest {
    origin: Option<HeaderValue>,
    method: Option<HeaderValue>,
    headers: Option<HeaderValue>,
}

impl CorsRequest {
    pub fn of(h: &HeaderMap) -> CorsRequest {
        CorsRequest {
            origin: h.get(header::ORIGIN).cloned(),
            method: h.get(header::ACCESS_CONTROL_REQUEST_METHOD).cloned(),
            headers: h.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned(),
        }
    }

    /// Very permissive CORS with credentials: mirror the origin, and on preflight the
    /// requested method and headers.
    pub fn apply(self, resp: &mut Response<Body>) {
        let h = resp.headers_mut();
        h.append(
            header::VARY,
            HeaderValue::from_static(
                "origin, access-control-request-method, access-control-request-headers",
            ),
        );
        let Some(origin) = self.origin else { return };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after, lock-token, timeout"),
        );
        if let Some(m) = self.method {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m);
        }
        if let Some(hs) = self.headers {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, hs);
        }
    }
}
