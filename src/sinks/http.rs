//! The HTTP client the HTTP forwarders (Loki, CloudWatch Logs) share.
//!
//! It wraps `reqwest` (over the hyper and tokio the daemon already runs on)
//! with TLS from rustls and the `ring` crypto provider: no OpenSSL to link
//! or to find at run time, which matters on appliances. Trust anchors are
//! the system's certificate store plus the Mozilla roots compiled in (so a
//! minimal image without `/etc/ssl` still reaches CloudWatch), plus an
//! optional CA file for a private Loki.
//!
//! Why reqwest and not hyper-util's client directly: reqwest *is* that
//! client (hyper-util's pooled legacy client with hyper-rustls) plus the
//! parts every forwarder would otherwise write again: per-request total and
//! connect timeouts, `HTTPS_PROXY`/`NO_PROXY` from the environment, and
//! root-store loading. It was already compiled for the test suite. Measured
//! on the 2-core build machine (shared with other builds, so rough): a cold
//! debug `cargo build --lib` went from 132 crates in 324 s to 198 crates in
//! 343 s with reqwest, rustls, ring, the root stores and `aws-sigv4` added.
//!
//! What the module promises:
//! - connections are kept alive and reused (one pool per [`HttpClient`];
//!   idle connections close after [`HttpOptions::pool_idle`]);
//! - every request ends within [`HttpOptions::timeout`], connecting within
//!   [`HttpOptions::connect_timeout`];
//! - redirects are not followed (a push answered with a redirect is a
//!   configuration error, shown as its status);
//! - an answer's body is read up to [`HttpOptions::max_answer_bytes`] and
//!   the rest is dropped, so a hostile or broken server cannot make a
//!   forwarder buffer without bound;
//! - errors say whether the request may have reached the server
//!   ([`TransportError`]), which is what retry decisions need.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// How the client behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpOptions {
    /// The whole request, from connecting to the last byte of the answer.
    pub timeout: Duration,
    /// Establishing the TCP connection (and TLS handshake).
    pub connect_timeout: Duration,
    /// How long an idle kept-alive connection stays in the pool.
    pub pool_idle: Duration,
    /// How much of an answer's body is kept.
    pub max_answer_bytes: usize,
    /// A PEM file of extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            pool_idle: Duration::from_secs(90),
            max_answer_bytes: 64 * 1024,
            ca_file: None,
            user_agent: concat!("ringtail/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("cannot read the CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {path} holds no usable PEM certificate: {detail}")]
    CaPem { path: PathBuf, detail: String },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// A request got no HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No connection: nothing reached the server.
    #[error("cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    /// The request or its answer took longer than the timeout; the server
    /// may have processed it.
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The connection broke during the exchange; the server may have
    /// processed it.
    #[error("request to {url} failed: {detail}")]
    Exchange { url: String, detail: String },
    /// The request could not be formed (bad URL or header): retrying will
    /// not help; fix the configuration.
    #[error("cannot send a request to {url}: {detail}")]
    Request { url: String, detail: String },
}

/// An HTTP answer.
#[derive(Clone, Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: http::HeaderMap,
    /// At most [`HttpOptions::max_answer_bytes`] of the body.
    pub body: Vec<u8>,
    /// The body was longer than what was kept.
    pub body_truncated: bool,
}

impl HttpAnswer {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A pooled HTTP/HTTPS client. Cheap to clone (clones share the pool).
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
    max_answer_bytes: usize,
}

impl HttpClient {
    pub fn new(options: &HttpOptions) -> Result<HttpClient, HttpSetupError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .pool_idle_timeout(options.pool_idle)
            .tcp_keepalive(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(options.user_agent.clone());
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path).map_err(|source| HttpSetupError::CaFile {
                path: path.clone(),
                source,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| HttpSetupError::CaPem {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(HttpSetupError::CaPem {
                    path: path.clone(),
                    detail: "no certificate found".into(),
                });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| HttpSetupError::Client(error_chain(&e)))?;
        Ok(HttpClient {
            client,
            timeout: options.timeout,
            max_answer_bytes: options.max_answer_bytes,
        })
    }

    /// Sends one request and reads its answer (up to the body limit).
    pub async fn send(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<HttpAnswer, TransportError> {
        let url = request.uri().to_string();
        let request = reqwest::Request::try_from(request).map_err(|e| TransportError::Request {
            url: url.clone(),
            detail: error_chain(&e),
        })?;
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|e| self.transport_error(&url, &e))?;
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        let mut body_truncated = false;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = self.max_answer_bytes - body.len();
                    if chunk.len() > room {
                        body.extend_from_slice(&chunk[..room]);
                        body_truncated = true;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport_error(&url, &e)),
            }
        }
        Ok(HttpAnswer {
            status,
            headers,
            body,
            body_truncated,
        })
    }

    fn transport_error(&self, url: &str, e: &reqwest::Error) -> TransportError {
        let url = url.to_string();
        if e.is_timeout() {
            TransportError::Timeout {
                url,
                timeout: self.timeout,
            }
        } else if e.is_connect() {
            TransportError::Connect {
                url,
                detail: error_chain(e),
            }
        } else if e.is_builder() {
            TransportError::Request {
                url,
                detail: error_chain(e),
            }
        } else {
            TransportError::Exchange {
                url,
                detail: error_chain(e),
            }
        }
    }
}

/// An error and its causes, as one line: reqwest's own message is often
/// just "error sending request", the cause says what happened.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date
/// (RFC 9110, 10.2.3). A date in the past means no wait; anything else
/// unreadable is ignored (`None`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurd numbers instead of refusing them; the backoff
        // caps what it honours.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[tokio::test]
    async fn answers_are_bounded_and_errors_classified() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            let body = "x".repeat(10_000);
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        let client = HttpClient::new(&HttpOptions {
            max_answer_bytes: 100,
            ..HttpOptions::default()
        })
        .unwrap();
        let req = http::Request::post(format!("http://{addr}/x"))
            .body(bytes::Bytes::from_static(b"hello"))
            .unwrap();
        let answer = client.send(req).await.unwrap();
        assert_eq!(answer.status, 503);
        assert_eq!(answer.header("retry-after"), Some("7"));
        assert_eq!(answer.body.len(), 100);
        assert!(answer.body_truncated);
        server.await.unwrap();

        // Nothing listens on a port we just closed: a connect error.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let req = http::Request::post(format!("http://{addr}/x"))
            .body(bytes::Bytes::new())
            .unwrap();
        assert!(matches!(
            client.send(req).await,
            Err(TransportError::Connect { .. })
        ));
    }
}
