//! One error type for every HTTP handler. 4xx answers say what to fix and are logged at debug
//! level; 5xx answers never carry internals (they are logged instead).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flightdeck_protocol::api::ApiError;
use flightdeck_protocol::Detail;

use crate::db::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    BadRequest { message: String, details: Vec<Detail> },
    #[error("authentication required: send a key (Authorization: Bearer) or log in")]
    Unauthorized,
    /// A key was given but is not one: unknown, mistyped or revoked (not the same as no key).
    #[error("this key is not valid: it is unknown or has been revoked")]
    InvalidKey,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A 409 with its own code for the UI to match (`not_pending`, `turn_in_progress`, ...).
    #[error("{message}")]
    ConflictCode { code: &'static str, message: String },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    /// A 400 naming one field.
    pub fn field(path: &str, problem: impl Into<String>) -> AppError {
        let problem = problem.into();
        AppError::BadRequest {
            message: format!("invalid {}: {problem}", path.trim_start_matches("$.")),
            details: vec![Detail::new(path, problem)],
        }
    }

    pub fn forbidden() -> AppError {
        AppError::Forbidden("forbidden".into())
    }

    pub fn not_found() -> AppError {
        AppError::NotFound("not found".into())
    }

    /// A 409 whose `error.code` is `code`.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> AppError {
        AppError::ConflictCode { code, message: message.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized | AppError::InvalidKey => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) | AppError::ConflictCode { .. } => StatusCode::CONFLICT,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Store(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Store(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest { .. } => "bad_request",
            AppError::Unauthorized => "unauthorized",
            AppError::InvalidKey => "invalid_key",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::ConflictCode { code, .. } => code,
            AppError::UnsupportedMediaType(_) => "unsupported_media_type",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::Store(e) if e.is_retryable() => "unavailable",
            AppError::Store(_) | AppError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            let message =
                if status == StatusCode::SERVICE_UNAVAILABLE { "busy, retry shortly" } else { "internal error" };
            ApiError::new(self.code(), message)
        } else {
            tracing::debug!(error = %self, "request refused");
            let mut e = ApiError::new(self.code(), self.to_string());
            if let AppError::BadRequest { details, .. } = &self {
                e = e.with_details(serde_json::to_value(details).unwrap_or_default());
            }
            e
        };
        let mut response = (status, Json(body)).into_response();
        if let AppError::RateLimited { retry_after_secs } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<flightdeck_protocol::InvalidMessage> for AppError {
    fn from(e: flightdeck_protocol::InvalidMessage) -> AppError {
        let message = match e.details.first() {
            Some(d) => format!("invalid request body: {}: {}", d.path, d.problem),
            None => "invalid request body".into(),
        };
        AppError::BadRequest { message, details: e.details }
    }
}
