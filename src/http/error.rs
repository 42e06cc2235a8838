//! `ApiError`: the one place where domain errors (routing, auth, store) become HTTP statuses
//! with the spec's plain-text bodies, and the one place that logs server-side failures.

use std::borrow::Cow;

use bytes::Bytes;
use hyper::{header, Response, StatusCode};

use super::body::Body;
use super::route::RouteError;
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

    pub fn into_response(self) -> Response<Body> {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), "{}", self.message);
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
