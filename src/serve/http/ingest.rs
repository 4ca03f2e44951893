//! `POST /api/v1/entries`: the HTTP side of ingest. The bodies it takes
//! and how they become entries are [`crate::sources::http_ingest`]'s; here
//! the body is read (at most `--http-max-body` bytes, checked on the
//! inflated size when sent with `Content-Encoding: gzip`, else 413), its
//! kind told from the content type, and the outcome answered:
//! `{"accepted":LINES,"entries":N,"first_seq":N,"last_seq":N}`, 400 for a
//! bad request, 503 when the ring's origin table is full.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::params::{self, IngestQuery};
use super::{ApiError, HttpState};
use crate::sources::budget;
use crate::sources::http_ingest::{self, IngestError};

/// The answer when the budget of bytes in flight stays spent (429 with
/// `Retry-After`) or a request needs more than all of it (413).
fn overloaded(e: budget::Overloaded) -> ApiError {
    match e {
        budget::Overloaded::Busy { .. } => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()).retry_after(1)
        }
        budget::Overloaded::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
    }
}

pub(super) async fn post(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    match ingest(&state, &headers, query.as_deref().unwrap_or(""), body).await {
        Ok(r) => r,
        Err(e) => {
            state
                .metrics
                .ingest_rejected
                .fetch_add(1, Ordering::Relaxed);
            e.into_response()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ndjson,
    Text,
}

fn kind(headers: &HeaderMap, q: &IngestQuery) -> Result<Kind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match ct.as_str() {
        "application/x-ndjson"
        | "application/json"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => Ok(Kind::Ndjson),
        "text/plain" => Ok(Kind::Text),
        "" | "application/x-www-form-urlencoded" | "application/octet-stream"
            if q.source.is_some() =>
        {
            Ok(Kind::Text)
        }
        "" | "application/x-www-form-urlencoded" | "application/octet-stream" => {
            Err(ApiError::bad_request(
                "say what the body is: text lines with ?source=NAME (and Content-Type: \
                 text/plain), or NDJSON objects with Content-Type: application/x-ndjson",
            ))
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type {other:?}: send NDJSON objects as \
                 application/x-ndjson, or text lines as text/plain with ?source=NAME"
            ),
        )),
    }
}

async fn ingest(
    state: &HttpState,
    headers: &HeaderMap,
    query: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let q = params::parse_ingest(query).map_err(ApiError::bad_request)?;
    let kind = kind(headers, &q)?;
    let max = state.config.max_body;
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is over the {max}-byte limit (--http-max-body); send fewer \
                 lines per request"
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Only a plain body's declared length is its stored size.
    if headers.get(header::CONTENT_ENCODING).is_none() && declared.is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    // Held under the daemon's budget of bytes in flight until the request
    // is stored (see `sources::budget`).
    let mut charge = budget::Charge::default();
    state
        .budget
        .take(&mut charge, budget::WORKING_BYTES)
        .await
        .map_err(overloaded)?;
    let hint = declared.filter(|_| headers.get(header::CONTENT_ENCODING).is_none());
    let bytes = match budget::collect(body, max, hint, &state.budget, &mut charge).await {
        Ok(b) => b,
        Err(budget::CollectError::TooLarge) => return Err(too_big()),
        Err(budget::CollectError::Overloaded(e)) => return Err(overloaded(e)),
        Err(e) => return Err(ApiError::bad_request(e.to_string())),
    };
    let done = match kind {
        Kind::Text => http_ingest::text(&state.pipeline, &q, &bytes),
        Kind::Ndjson => http_ingest::ndjson(&state.pipeline, &q, &bytes),
    }
    .map_err(|e| match e {
        IngestError::Invalid(msg) => ApiError::bad_request(msg),
        IngestError::Unavailable(msg) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg),
    })?;
    state
        .metrics
        .ingested_entries
        .fetch_add(done.entries, Ordering::Relaxed);
    let answer = serde_json::json!({
        "accepted": done.lines,
        "entries": done.entries,
        "first_seq": done.seqs.as_ref().map(|r| r.0),
        "last_seq": done.seqs.as_ref().map(|r| r.1),
    });
    Ok(super::json_bytes(
        serde_json::to_vec(&answer).expect("the ingest answer serialises"),
    ))
}
