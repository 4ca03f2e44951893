//! The CloudWatch Logs calls a forwarder makes, as JSON over HTTP
//! (`POST /`, `X-Amz-Target: Logs_20140328.<Action>`,
//! `Content-Type: application/x-amz-json-1.1`), and what their answers mean.
//!
//! # Answers
//!
//! | answer | outcome |
//! |--------|---------|
//! | 200 to PutLogEvents | [`CallOutcome::Done`]; events listed in `rejectedLogEventsInfo` are counted by reason ([`RejectedEvents`]) |
//! | `ThrottlingException`, `ServiceUnavailableException`, `InternalFailure`, `LimitExceededException`, `RequestTimeout`, any 5xx, no answer | [`CallOutcome::Retry`] |
//! | `ResourceNotFoundException` | [`CallOutcome::Missing`]: create the group and stream if configured, else retry (someone may create them) |
//! | `DataAlreadyAcceptedException` | done: an earlier attempt was stored |
//! | `InvalidSequenceTokenException` | retry (sequence tokens are ignored by the service today) |
//! | credentials problems (`UnrecognizedClientException`, `AccessDeniedException`, `InvalidSignatureException`, `ExpiredTokenException`, `IncompleteSignature`, `MissingAuthenticationToken`, 401/403) | [`CallOutcome::Retry`] as [`RetryCause::Credentials`]: nothing was stored; credentials are read again before the next attempt |
//! | `InvalidParameterException` and other 4xx | [`CallOutcome::Rejected`]: the service refuses the request for good |
//!
//! The error name comes from the body's `__type` (`"ThrottlingException"`,
//! or `"com.amazonaws.logs#ThrottlingException"`, or with a `:` and a URL
//! after it) or the `x-amzn-ErrorType` header.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::sinks::http::{HttpAnswer, TransportError};

/// The JSON protocol's target prefix.
pub const TARGET_PREFIX: &str = "Logs_20140328.";
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// One event of PutLogEvents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputLogEvent {
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub message: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PutLogEventsBody<'a> {
    log_group_name: &'a str,
    log_stream_name: &'a str,
    log_events: &'a [InputLogEvent],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody<'a> {
    log_group_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_stream_name: Option<&'a str>,
}

/// The body of PutLogEvents.
pub fn put_log_events_body(group: &str, stream: &str, events: &[InputLogEvent]) -> Vec<u8> {
    serde_json::to_vec(&PutLogEventsBody {
        log_group_name: group,
        log_stream_name: stream,
        log_events: events,
    })
    .expect("events always serialize")
}

/// The body of CreateLogGroup.
pub fn create_log_group_body(group: &str) -> Vec<u8> {
    serde_json::to_vec(&CreateBody {
        log_group_name: group,
        log_stream_name: None,
    })
    .expect("names always serialize")
}

/// The body of CreateLogStream.
pub fn create_log_stream_body(group: &str, stream: &str) -> Vec<u8> {
    serde_json::to_vec(&CreateBody {
        log_group_name: group,
        log_stream_name: Some(stream),
    })
    .expect("names always serialize")
}

/// Events the service refused in a successful PutLogEvents, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectedEvents {
    /// Older than the 14 days the service takes.
    pub too_old: u64,
    /// More than 2 hours in the future.
    pub too_new: u64,
    /// Older than the log group's retention.
    pub expired: u64,
}

impl RejectedEvents {
    pub fn total(&self) -> u64 {
        self.too_old + self.too_new + self.expired
    }
}

impl fmt::Display for RejectedEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} too old, {} too new, {} expired",
            self.too_old, self.too_new, self.expired
        )
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RejectedInfo {
    too_new_log_event_start_index: Option<i64>,
    too_old_log_event_end_index: Option<i64>,
    expired_log_event_end_index: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PutAnswer {
    rejected_log_events_info: Option<RejectedInfo>,
}

/// A body the service should not have sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unreadable answer from CloudWatch Logs: {0}")]
pub struct AnswerError(pub String);

/// Counts the events of a PutLogEvents answer's `rejectedLogEventsInfo`,
/// for a request of `events` events. Each event counts once: indexes up to
/// `expiredLogEventEndIndex` as expired, then up to
/// `tooOldLogEventEndIndex` as too old, and from `tooNewLogEventStartIndex`
/// on as too new; indexes outside the request are clamped to it.
pub fn parse_put_answer(body: &[u8], events: usize) -> Result<RejectedEvents, AnswerError> {
    let answer: PutAnswer = if body.iter().all(u8::is_ascii_whitespace) {
        PutAnswer::default()
    } else {
        serde_json::from_slice(body).map_err(|e| AnswerError(e.to_string()))?
    };
    let Some(info) = answer.rejected_log_events_info else {
        return Ok(RejectedEvents::default());
    };
    let n = events as i64;
    // The number of events in [0, end] within the request.
    let through = |end: Option<i64>| end.map_or(0, |e| (e.saturating_add(1)).clamp(0, n));
    let expired = through(info.expired_log_event_end_index);
    let old = through(info.too_old_log_event_end_index).max(expired);
    let new_start = info
        .too_new_log_event_start_index
        .map_or(n, |s| s.clamp(old, n));
    Ok(RejectedEvents {
        expired: expired as u64,
        too_old: (old - expired) as u64,
        too_new: (n - new_start) as u64,
    })
}

/// The service's error names a forwarder acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Throttling,
    ServiceUnavailable,
    ResourceNotFound,
    ResourceAlreadyExists,
    DataAlreadyAccepted,
    InvalidSequenceToken,
    Credentials,
    LimitExceeded,
    InvalidParameter,
    Other(String),
}

impl ErrorKind {
    fn from_name(name: &str) -> ErrorKind {
        match name {
            "ThrottlingException" | "Throttling" | "TooManyRequestsException" => {
                ErrorKind::Throttling
            }
            "ServiceUnavailableException"
            | "ServiceUnavailable"
            | "InternalFailure"
            | "InternalServerError"
            | "RequestTimeout"
            | "RequestTimeoutException" => ErrorKind::ServiceUnavailable,
            "ResourceNotFoundException" => ErrorKind::ResourceNotFound,
            "ResourceAlreadyExistsException" => ErrorKind::ResourceAlreadyExists,
            "DataAlreadyAcceptedException" => ErrorKind::DataAlreadyAccepted,
            "InvalidSequenceTokenException" => ErrorKind::InvalidSequenceToken,
            "UnrecognizedClientException"
            | "AccessDeniedException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch" => ErrorKind::Credentials,
            "LimitExceededException" => ErrorKind::LimitExceeded,
            "InvalidParameterException" | "ValidationException" | "SerializationException" => {
                ErrorKind::InvalidParameter
            }
            other => ErrorKind::Other(other.to_string()),
        }
    }
}

/// An error answer, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    pub status: u16,
    /// The error's name without namespace (`ThrottlingException`), or
    /// empty when the answer named none.
    pub name: String,
    pub message: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type")]
    kind: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// `com.amazonaws.logs#Name:http://...` -> `Name`.
fn bare_name(raw: &str) -> &str {
    let raw = raw.rsplit('#').next().unwrap_or(raw);
    raw.split(':').next().unwrap_or(raw).trim()
}

/// Reads an error answer (any body: a non-JSON one gives an empty name and
/// its start as the message).
pub fn parse_error(status: u16, error_type_header: Option<&str>, body: &[u8]) -> ServiceError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let name = parsed
        .as_ref()
        .and_then(|b| b.kind.as_deref())
        .or(error_type_header)
        .map(bare_name)
        .unwrap_or("")
        .to_string();
    let message = match parsed.and_then(|b| b.message) {
        Some(m) => m,
        None => String::from_utf8_lossy(&body[..body.len().min(512)])
            .trim()
            .to_string(),
    };
    ServiceError {
        status,
        name,
        message,
    }
}

/// Why a call is worth trying again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryCause {
    Throttled,
    Unavailable,
    Credentials,
    /// The group or stream is missing and creating it is not configured.
    Missing,
    Transport(TransportError),
}

/// What to do after a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// Stored (for PutLogEvents: refusals inside the answer, counted).
    Done(RejectedEvents),
    Retry {
        cause: RetryCause,
        message: String,
    },
    /// The log group or stream does not exist.
    Missing {
        message: String,
    },
    /// Refused for good.
    Rejected {
        error: ServiceError,
    },
}

/// Classifies the answer to a PutLogEvents of `events` events (also used
/// for the Create calls, with `events` 0).
pub fn classify_answer(answer: &HttpAnswer, events: usize) -> CallOutcome {
    if (200..300).contains(&answer.status) {
        return match parse_put_answer(&answer.body, events) {
            Ok(rejected) => CallOutcome::Done(rejected),
            // A 200 whose body we cannot read: the events were stored.
            Err(_) => CallOutcome::Done(RejectedEvents::default()),
        };
    }
    let error = parse_error(
        answer.status,
        answer.header("x-amzn-errortype"),
        &answer.body,
    );
    classify_error(error)
}

/// Classifies a read error answer.
pub fn classify_error(error: ServiceError) -> CallOutcome {
    let retry = |cause, error: &ServiceError| CallOutcome::Retry {
        cause,
        message: format!("{} {}: {}", error.status, error.name, error.message),
    };
    match ErrorKind::from_name(&error.name) {
        ErrorKind::Throttling => retry(RetryCause::Throttled, &error),
        ErrorKind::ServiceUnavailable
        | ErrorKind::InvalidSequenceToken
        | ErrorKind::LimitExceeded => retry(RetryCause::Unavailable, &error),
        ErrorKind::Credentials => retry(RetryCause::Credentials, &error),
        ErrorKind::ResourceNotFound => CallOutcome::Missing {
            message: error.message,
        },
        ErrorKind::DataAlreadyAccepted | ErrorKind::ResourceAlreadyExists => {
            CallOutcome::Done(RejectedEvents::default())
        }
        ErrorKind::InvalidParameter => CallOutcome::Rejected { error },
        ErrorKind::Other(_) => match error.status {
            429 => retry(RetryCause::Throttled, &error),
            401 | 403 => retry(RetryCause::Credentials, &error),
            400..=499 => CallOutcome::Rejected { error },
            _ => retry(RetryCause::Unavailable, &error),
        },
    }
}

/// A call that got no answer.
pub fn classify_transport(error: TransportError) -> CallOutcome {
    CallOutcome::Retry {
        message: error.to_string(),
        cause: RetryCause::Transport(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies() {
        let events = [InputLogEvent {
            timestamp: 5,
            message: "a\"b".into(),
        }];
        assert_eq!(
            String::from_utf8(put_log_events_body("g", "s", &events)).unwrap(),
            r#"{"logGroupName":"g","logStreamName":"s","logEvents":[{"timestamp":5,"message":"a\"b"}]}"#
        );
        assert_eq!(create_log_group_body("g"), br#"{"logGroupName":"g"}"#);
        assert_eq!(
            create_log_stream_body("g", "s"),
            br#"{"logGroupName":"g","logStreamName":"s"}"#
        );
    }

    #[test]
    fn rejected_events_count_each_event_once() {
        let r = parse_put_answer(br#"{"nextSequenceToken":"1"}"#, 10).unwrap();
        assert_eq!(r.total(), 0);
        assert_eq!(parse_put_answer(b"", 10).unwrap().total(), 0);
        let r = parse_put_answer(
            br#"{"rejectedLogEventsInfo":{"tooOldLogEventEndIndex":2,"expiredLogEventEndIndex":0,"tooNewLogEventStartIndex":8}}"#,
            10,
        )
        .unwrap();
        assert_eq!(
            r,
            RejectedEvents {
                expired: 1,
                too_old: 2,
                too_new: 2
            }
        );
        // Indexes beyond the request are clamped; ranges never overlap.
        let r = parse_put_answer(
            br#"{"rejectedLogEventsInfo":{"tooOldLogEventEndIndex":50,"tooNewLogEventStartIndex":-3}}"#,
            10,
        )
        .unwrap();
        assert_eq!(r.total(), 10);
        assert_eq!(r.too_old, 10);
        let r = parse_put_answer(
            br#"{"rejectedLogEventsInfo":{"expiredLogEventEndIndex":9223372036854775807}}"#,
            4,
        )
        .unwrap();
        assert_eq!(r.expired, 4);
        assert!(parse_put_answer(b"{not json", 3).is_err());
    }

    #[test]
    fn error_names_and_outcomes() {
        let e = parse_error(
            400,
            None,
            br#"{"__type":"com.amazonaws.logs#ResourceNotFoundException","message":"The specified log group does not exist."}"#,
        );
        assert_eq!(e.name, "ResourceNotFoundException");
        assert!(matches!(classify_error(e), CallOutcome::Missing { .. }));
        let e = parse_error(400, None, br#"{"__type":"ThrottlingException:http://internal.amazon.com/","Message":"Rate exceeded"}"#);
        assert_eq!(
            (e.name.as_str(), e.message.as_str()),
            ("ThrottlingException", "Rate exceeded")
        );
        assert!(matches!(
            classify_error(e),
            CallOutcome::Retry {
                cause: RetryCause::Throttled,
                ..
            }
        ));
        let e = parse_error(
            503,
            Some("ServiceUnavailableException"),
            b"<html>oops</html>",
        );
        assert_eq!(e.name, "ServiceUnavailableException");
        assert_eq!(e.message, "<html>oops</html>");
        assert!(matches!(
            classify_error(e),
            CallOutcome::Retry {
                cause: RetryCause::Unavailable,
                ..
            }
        ));
        for (name, status) in [
            ("DataAlreadyAcceptedException", 400),
            ("ResourceAlreadyExistsException", 400),
        ] {
            let e = ServiceError {
                status,
                name: name.into(),
                message: String::new(),
            };
            assert_eq!(
                classify_error(e),
                CallOutcome::Done(RejectedEvents::default())
            );
        }
        let e = parse_error(400, None, br#"{"__type":"InvalidParameterException","message":"Log events in a single PutLogEvents request must be in chronological order."}"#);
        assert!(matches!(classify_error(e), CallOutcome::Rejected { .. }));
        let e = parse_error(400, None, br#"{"__type":"ExpiredTokenException","message":"The security token included in the request is expired"}"#);
        assert!(matches!(
            classify_error(e),
            CallOutcome::Retry {
                cause: RetryCause::Credentials,
                ..
            }
        ));
        // Unnamed errors go by status.
        for (status, retry) in [(500, true), (429, true), (403, true), (418, false)] {
            let outcome = classify_error(parse_error(status, None, b""));
            assert_eq!(
                matches!(outcome, CallOutcome::Retry { .. }),
                retry,
                "{status}"
            );
        }
    }
}
