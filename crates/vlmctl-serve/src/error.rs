use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use vlmctl_store::StoreError;

/// Why the service cannot start (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another address than loopback without an API key.
    #[error("refusing to listen on {addr} without an API key")]
    ExposedWithoutKey {
        /// The address.
        addr: SocketAddr,
    },
    /// An API key too short to be one.
    #[error("the API key is shorter than {min} characters")]
    WeakKey {
        /// [`crate::MIN_API_KEY_LEN`].
        min: usize,
    },
    /// The port is taken, or the address not ours.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The history database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A task of ours failed.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl ServeError {
    /// What to do next.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::ExposedWithoutKey { .. } | Self::WeakKey { .. } => Some(format!(
                "set VLMCTL_SERVE_API_KEY to a secret of at least {} characters (clients send \
                 it as `Authorization: Bearer KEY`; a browser asks for it as the password), or \
                 keep the default --bind 127.0.0.1",
                vlmctl_deploy::plan::MIN_API_KEY_LEN
            )),
            Self::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse => {
                Some("another process listens there: pick another --port".to_owned())
            }
            Self::Bind { .. } | Self::Task(_) => None,
            Self::Store(e) => e.hint(),
        }
    }
}

/// An API error: a status and a one-paragraph message, as JSON `{"error": ..., "hint": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
    /// What to do.
    pub hint: Option<String>,
}

impl ApiError {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            hint: None,
        }
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            hint: None,
        }
    }
    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            message: message.into(),
            hint: None,
        }
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            hint: None,
        }
    }
    /// With a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::NotRunning { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            status,
            hint: e.hint(),
            message: vlmctl_base::chain::one_line(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message, "hint": self.hint })),
        )
            .into_response();
        // A body that came too slowly or was too large was not read to its end: the
        // connection closes after the answer rather than wait for the rest.
        if matches!(
            self.status,
            axum::http::StatusCode::REQUEST_TIMEOUT | axum::http::StatusCode::PAYLOAD_TOO_LARGE
        ) {
            r.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        r
    }
}
