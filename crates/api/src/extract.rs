//! Extractors that refuse bad input with the API's own error codes (axum's
//! own answer in plain text otherwise).

use crate::error::{ApiError, INVALID_JSON, INVALID_QUERY, MEDIA_TYPE, REQUEST_TOO_LARGE};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// A JSON body.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            MEDIA_TYPE,
            "send the body as Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(REQUEST_TOO_LARGE, "the request body is too large")
        }
        JsonRejection::JsonDataError(e) => ApiError::new(INVALID_JSON, e.body_text()),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(INVALID_JSON, e.body_text()),
        other => ApiError::new(INVALID_JSON, other.body_text()),
    }
}

/// Read the whole body, answering a too-large one with the API's code.
pub async fn body_bytes(req: Request) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(req, &())
        .await
        .map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(REQUEST_TOO_LARGE, "the request body is too large")
            } else {
                ApiError::new(INVALID_JSON, e.body_text())
            }
        })
}

/// Query parameters.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ApiError {
    ApiError::new(INVALID_QUERY, e.body_text())
}
