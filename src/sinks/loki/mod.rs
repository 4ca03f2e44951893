//! Forwarding to Grafana Loki's push API (protocols.md section 9,
//! loki-api.md "Push body").
//!
//! The parts, in the order a batch meets them:
//! - [`labels`]: an entry's stream labels under Loki's rules (names
//!   sanitised, clashes resolved, at most 15, values escaped);
//! - [`batch`]: entries grouped per stream in seq order under caps, long
//!   lines split, timestamps unique per stream, encoded as snappy protobuf
//!   or (gzip) JSON;
//! - [`LokiTarget`]: the push URL, tenant and credentials, turned into a
//!   request;
//! - [`answer`]: Loki's answer turned into accept / retry / refused-with-counts.
//!
//! One push is in flight per forwarder, so a stream's entries arrive in
//! order. A batch is sent unchanged until it is acknowledged: accepted,
//! or refused for good (counted by reason). [`push`] does one attempt;
//! backoff between attempts is the caller's ([`crate::sinks::backoff`]).

pub mod answer;
pub mod batch;
pub mod labels;
pub mod sink;

use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};

pub use answer::{
    classify_answer, classify_transport, LokiReason, PushOutcome, RejectCounts, RetryCause,
};
pub use batch::{Admit, LokiBatch, LokiBatchConfig, LokiBatcher, LokiEncoding};
pub use labels::{LabelRules, Overflow};

use crate::sinks::http::HttpClient;

/// The path of Loki's push endpoint.
pub const PUSH_PATH: &str = "/loki/api/v1/push";

/// How the forwarder proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum LokiAuth {
    Bearer(String),
    Basic { username: String, password: String },
}

impl std::fmt::Debug for LokiAuth {
    // Never print a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LokiAuth::Bearer(_) => f.write_str("Bearer(..)"),
            LokiAuth::Basic { username, .. } => write!(f, "Basic({username:?}, ..)"),
        }
    }
}

/// A Loki target that cannot be used as configured.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LokiSetupError {
    #[error(
        "bad Loki URL {url:?}: {problem} (give Loki's base URL, such as http://loki:3100, \
         or the full push URL ending in {PUSH_PATH})"
    )]
    Url { url: String, problem: String },
    #[error("the tenant {0:?} cannot be sent as an X-Scope-OrgID header (use visible ASCII)")]
    Tenant(String),
    #[error("the Loki credentials cannot be sent as an HTTP header (use visible ASCII)")]
    Credentials,
}

/// Where and as whom a forwarder pushes.
#[derive(Clone, Debug)]
pub struct LokiTarget {
    push_url: http::Uri,
    tenant: Option<HeaderValue>,
    authorization: Option<HeaderValue>,
}

impl LokiTarget {
    /// `url` is Loki's base URL (`http://loki:3100`, `https://host/prefix`)
    /// or the full push URL.
    pub fn new(
        url: &str,
        tenant: Option<&str>,
        auth: Option<&LokiAuth>,
    ) -> Result<LokiTarget, LokiSetupError> {
        let bad = |problem: &str| LokiSetupError::Url {
            url: url.to_string(),
            problem: problem.to_string(),
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            Some(other) => return Err(bad(&format!("scheme {other:?} is not http or https"))),
            None => return Err(bad("no scheme")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if uri.query().is_some() {
            return Err(bad("a query string is not expected"));
        }
        let path = uri.path().trim_end_matches('/');
        let path = if path.ends_with(PUSH_PATH) {
            path.to_string()
        } else {
            format!("{path}{PUSH_PATH}")
        };
        let push_url = http::Uri::builder()
            .scheme(uri.scheme_str().unwrap_or("http"))
            .authority(uri.authority().map(|a| a.as_str()).unwrap_or_default())
            .path_and_query(path)
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        let tenant = tenant
            .map(|t| {
                HeaderValue::from_str(t)
                    .ok()
                    .filter(|_| !t.is_empty())
                    .ok_or_else(|| LokiSetupError::Tenant(t.to_string()))
            })
            .transpose()?;
        let authorization = auth
            .map(|a| {
                let text = match a {
                    LokiAuth::Bearer(token) => format!("Bearer {token}"),
                    LokiAuth::Basic { username, password } => format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD
                            .encode(format!("{username}:{password}"))
                    ),
                };
                let mut v =
                    HeaderValue::from_str(&text).map_err(|_| LokiSetupError::Credentials)?;
                v.set_sensitive(true);
                Ok(v)
            })
            .transpose()?;
        Ok(LokiTarget {
            push_url,
            tenant,
            authorization,
        })
    }

    pub fn push_url(&self) -> &http::Uri {
        &self.push_url
    }

    /// The push request for a batch. The body is shared, not copied.
    pub fn request(&self, batch: &LokiBatch) -> http::Request<Bytes> {
        let mut builder =
            http::Request::post(self.push_url.clone()).header(CONTENT_TYPE, batch.content_type);
        if let Some(enc) = batch.content_encoding {
            builder = builder.header(CONTENT_ENCODING, enc);
        }
        if let Some(t) = &self.tenant {
            builder = builder.header("x-scope-orgid", t.clone());
        }
        if let Some(a) = &self.authorization {
            builder = builder.header(AUTHORIZATION, a.clone());
        }
        builder
            .body(batch.body.clone())
            .expect("the URL and headers were checked when the target was made")
    }
}

/// One attempt to push a batch.
pub async fn push(client: &HttpClient, target: &LokiTarget, batch: &LokiBatch) -> PushOutcome {
    match client.send(target.request(batch)).await {
        Ok(answer) => classify_answer(&answer, batch, SystemTime::now()),
        Err(e) => classify_transport(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_urls() {
        let url = |u: &str| LokiTarget::new(u, None, None).map(|t| t.push_url().to_string());
        assert_eq!(
            url("http://loki:3100").unwrap(),
            "http://loki:3100/loki/api/v1/push"
        );
        assert_eq!(
            url("http://loki:3100/").unwrap(),
            "http://loki:3100/loki/api/v1/push"
        );
        assert_eq!(
            url("https://gw.example/tenant-a/").unwrap(),
            "https://gw.example/tenant-a/loki/api/v1/push"
        );
        assert_eq!(
            url("http://127.0.0.1:9/loki/api/v1/push").unwrap(),
            "http://127.0.0.1:9/loki/api/v1/push"
        );
        for bad in [
            "loki:3100",
            "ftp://x/",
            "http://",
            "http://x/?a=b",
            "not a url",
        ] {
            let err = url(bad).unwrap_err().to_string();
            assert!(err.contains("bad Loki URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn headers() {
        let auth = LokiAuth::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        let t = LokiTarget::new("http://l:3100", Some("team-a"), Some(&auth)).unwrap();
        let mut b = LokiBatcher::new(LokiBatchConfig {
            encoding: LokiEncoding::Json { gzip: true },
            ..LokiBatchConfig::default()
        });
        let origin = crate::entry::Origin::new("s");
        let e = crate::entry::EntryRef {
            seq: 1,
            time: 5,
            source_time: Default::default(),
            origin: &origin,
            flags: crate::entry::Flags::default(),
            msg: b"hi",
        };
        assert_eq!(b.push(&e), Admit::Added);
        let batch = b.finish().unwrap();
        let req = t.request(&batch);
        let h = req.headers();
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["content-encoding"], "gzip");
        assert_eq!(h["x-scope-orgid"], "team-a");
        assert_eq!(h["authorization"], "Basic dTpw");
        assert!(h["authorization"].is_sensitive());
        assert_eq!(format!("{auth:?}"), "Basic(\"u\", ..)");
        assert!(matches!(
            LokiTarget::new("http://l", Some("bad\ntenant"), None),
            Err(LokiSetupError::Tenant(_))
        ));
    }
}
