//! Forwarding to AWS CloudWatch Logs with PutLogEvents (protocols.md
//! section 9), signed with SigV4 by the `aws-sigv4` crate alone (the AWS
//! SDK would bring a runtime, retries and credential chains of its own).
//!
//! The parts:
//! - [`template`]: log group and stream names per entry;
//! - [`batch`]: requests that obey the service's rules;
//! - [`api`]: request bodies, answers and what they mean;
//! - [`credentials`]: keys from the environment or the shared file;
//! - [`CloudWatchTarget`]: region, endpoint and credentials; signs and
//!   sends calls, and [`CloudWatchTarget::put_batch`] sends a batch's
//!   requests, creating a missing group and stream when configured.
//!
//! A batch may hold several requests (one per log stream). CloudWatch does
//! not drop duplicates, so a retry must not send a request that was
//! already stored: [`BatchProgress`] remembers which requests are done, and
//! `put_batch` sends only the others. The batch is acknowledged when every
//! request is done (stored, or refused for good and counted).

pub mod api;
pub mod batch;
pub mod credentials;
pub mod sink;
pub mod template;

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;

pub use api::{CallOutcome, RejectedEvents, RetryCause, ServiceError};
pub use batch::{check_request, CwBatch, CwBatchConfig, CwBatcher, PutRequest};
pub use credentials::{AwsCredentials, CredentialSource, CredentialsError};
pub use template::{NameKind, NameTemplate};

use crate::sinks::http::HttpClient;

/// A CloudWatch target that cannot be used as configured.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloudWatchSetupError {
    #[error("bad AWS region {0:?} (such as eu-west-1)")]
    Region(String),
    #[error("bad CloudWatch Logs endpoint {url:?}: {problem} (such as https://logs.eu-west-1.amazonaws.com)")]
    Endpoint { url: String, problem: String },
}

/// Where and as whom a forwarder calls CloudWatch Logs.
#[derive(Clone, Debug)]
pub struct CloudWatchTarget {
    region: String,
    endpoint: http::Uri,
    credentials: CredentialSource,
    /// Create a missing log group and stream instead of waiting for them.
    pub create_missing: bool,
}

/// Which requests of a batch are done, across attempts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchProgress {
    /// Per request of the batch.
    pub done: Vec<bool>,
    /// Events stored-and-refused inside successful answers.
    pub rejected: RejectedEvents,
    /// Requests refused for good: (request index, its events, the error).
    pub refused: Vec<(usize, usize, ServiceError)>,
}

impl BatchProgress {
    /// Events refused for good in refused requests.
    pub fn refused_events(&self) -> u64 {
        self.refused.iter().map(|(_, n, _)| *n as u64).sum()
    }
}

/// What became of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every request is done: acknowledge the batch; the progress holds
    /// the counts of refusals.
    Done,
    /// Try again after the backoff (the progress keeps what is done).
    Retry { cause: RetryCause, message: String },
}

impl CloudWatchTarget {
    /// `endpoint`: `None` for `https://logs.<region>.amazonaws.com`.
    pub fn new(
        region: &str,
        endpoint: Option<&str>,
        credentials: CredentialSource,
    ) -> Result<CloudWatchTarget, CloudWatchSetupError> {
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(CloudWatchSetupError::Region(region.to_string()));
        }
        let text = match endpoint {
            Some(e) => e.to_string(),
            None => format!("https://logs.{region}.amazonaws.com/"),
        };
        let bad = |problem: &str| CloudWatchSetupError::Endpoint {
            url: text.clone(),
            problem: problem.to_string(),
        };
        let uri: http::Uri = text
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        if !matches!(uri.scheme_str(), Some("http") | Some("https")) {
            return Err(bad("the scheme must be http or https"));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("a path or query is not expected"));
        }
        let endpoint = http::Uri::builder()
            .scheme(uri.scheme_str().unwrap_or("https"))
            .authority(uri.authority().map(|a| a.as_str()).unwrap_or_default())
            .path_and_query("/")
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(CloudWatchTarget {
            region: region.to_string(),
            endpoint,
            credentials,
            create_missing: false,
        })
    }

    pub fn endpoint(&self) -> &http::Uri {
        &self.endpoint
    }

    /// A signed request for `action` (`PutLogEvents`, `CreateLogGroup`, ...).
    pub fn request(
        &self,
        action: &str,
        body: Bytes,
        now: SystemTime,
    ) -> Result<http::Request<Bytes>, CredentialsError> {
        let creds = self.credentials.load()?;
        let mut request = http::Request::post(self.endpoint.clone())
            .header(
                http::header::HOST,
                self.endpoint
                    .authority()
                    .map(|a| a.as_str())
                    .unwrap_or_default(),
            )
            .header(http::header::CONTENT_TYPE, api::CONTENT_TYPE)
            .header("x-amz-target", format!("{}{action}", api::TARGET_PREFIX))
            .body(body)
            .expect("the endpoint was checked and the headers are constant text");
        let identity = Credentials::new(
            creds.access_key_id,
            creds.secret_access_key,
            creds.session_token,
            None,
            "ringtail",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("logs")
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .expect("every signing parameter is set")
            .into();
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        let uri = request.uri().to_string();
        let signable = SignableRequest::new(
            "POST",
            &uri,
            headers.into_iter(),
            SignableBody::Bytes(request.body()),
        )
        .expect("a request built from a checked URI is signable");
        let (instructions, _signature) = sign(signable, &params)
            .expect("signing a well-formed request cannot fail")
            .into_parts();
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }

    /// One call; `events` is the number of events of a PutLogEvents (0
    /// for other actions).
    pub async fn call(
        &self,
        client: &HttpClient,
        action: &str,
        body: Bytes,
        events: usize,
    ) -> CallOutcome {
        let request = match self.request(action, body, SystemTime::now()) {
            Ok(r) => r,
            Err(e) => {
                return CallOutcome::Retry {
                    cause: RetryCause::Credentials,
                    message: e.to_string(),
                }
            }
        };
        match client.send(request).await {
            Ok(answer) => api::classify_answer(&answer, events),
            Err(e) => api::classify_transport(e),
        }
    }

    /// Creates a log group and stream, taking "already exists" as success.
    pub async fn create(&self, client: &HttpClient, group: &str, stream: &str) -> CallOutcome {
        let g = self
            .call(
                client,
                "CreateLogGroup",
                api::create_log_group_body(group).into(),
                0,
            )
            .await;
        if !matches!(g, CallOutcome::Done(_)) {
            return g;
        }
        self.call(
            client,
            "CreateLogStream",
            api::create_log_stream_body(group, stream).into(),
            0,
        )
        .await
    }

    /// Sends the requests of `batch` that `progress` does not mark done.
    pub async fn put_batch(
        &self,
        client: &HttpClient,
        batch: &CwBatch,
        progress: &mut BatchProgress,
    ) -> BatchOutcome {
        progress.done.resize(batch.requests.len(), false);
        for (i, request) in batch.requests.iter().enumerate() {
            if progress.done[i] {
                continue;
            }
            let mut created = false;
            loop {
                let outcome = self
                    .call(
                        client,
                        "PutLogEvents",
                        request.body.clone(),
                        request.events.len(),
                    )
                    .await;
                match outcome {
                    CallOutcome::Done(rejected) => {
                        progress.rejected.too_old += rejected.too_old;
                        progress.rejected.too_new += rejected.too_new;
                        progress.rejected.expired += rejected.expired;
                        progress.done[i] = true;
                        break;
                    }
                    CallOutcome::Rejected { error } => {
                        progress.refused.push((i, request.events.len(), error));
                        progress.done[i] = true;
                        break;
                    }
                    CallOutcome::Missing { message } if self.create_missing && !created => {
                        created = true;
                        match self.create(client, &request.group, &request.stream).await {
                            CallOutcome::Done(_) => continue,
                            CallOutcome::Retry { cause, message } => return BatchOutcome::Retry { cause, message },
                            other => {
                                return BatchOutcome::Retry {
                                    cause: RetryCause::Missing,
                                    message: format!(
                                        "log group {:?} or stream {:?} is missing ({message}) and cannot be created: {other:?}",
                                        request.group, request.stream
                                    ),
                                }
                            }
                        }
                    }
                    CallOutcome::Missing { message } => {
                        return BatchOutcome::Retry {
                            cause: RetryCause::Missing,
                            message: format!(
                                "log group {:?} or stream {:?} does not exist: {message}",
                                request.group, request.stream
                            ),
                        }
                    }
                    CallOutcome::Retry { cause, message } => {
                        return BatchOutcome::Retry { cause, message }
                    }
                }
            }
        }
        BatchOutcome::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> CredentialSource {
        CredentialSource::fixed(AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        })
    }

    #[test]
    fn endpoints_and_regions() {
        let t = CloudWatchTarget::new("eu-west-1", None, creds()).unwrap();
        assert_eq!(
            t.endpoint().to_string(),
            "https://logs.eu-west-1.amazonaws.com/"
        );
        let t = CloudWatchTarget::new("us-east-1", Some("http://127.0.0.1:4566"), creds()).unwrap();
        assert_eq!(t.endpoint().to_string(), "http://127.0.0.1:4566/");
        assert!(CloudWatchTarget::new("EU WEST", None, creds()).is_err());
        assert!(CloudWatchTarget::new("", None, creds()).is_err());
        for bad in ["ftp://x", "http://x/path", "nohost"] {
            assert!(
                CloudWatchTarget::new("us-east-1", Some(bad), creds()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn requests_are_signed() {
        let t = CloudWatchTarget::new("us-east-1", Some("http://127.0.0.1:4566"), creds()).unwrap();
        // 2015-08-30T12:36:00Z, the date of AWS's SigV4 examples.
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        let r = t
            .request("PutLogEvents", Bytes::from_static(b"{}"), now)
            .unwrap();
        let h = r.headers();
        assert_eq!(h["x-amz-target"], "Logs_20140328.PutLogEvents");
        assert_eq!(h["content-type"], "application/x-amz-json-1.1");
        assert_eq!(h["x-amz-date"], "20150830T123600Z");
        let auth = h["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/logs/aws4_request, SignedHeaders="),
            "{auth}"
        );
        assert!(auth.contains("x-amz-target"), "{auth}");
        // The same request at the same time signs the same; another body not.
        let again = t
            .request("PutLogEvents", Bytes::from_static(b"{}"), now)
            .unwrap();
        assert_eq!(again.headers()["authorization"], h["authorization"]);
        let other = t
            .request("PutLogEvents", Bytes::from_static(b"{ }"), now)
            .unwrap();
        assert_ne!(other.headers()["authorization"], h["authorization"]);
    }
}
