//! The logging-plugin API as dockerd calls it: which call a path is, what
//! its body says, what to answer. The side effects (reading a FIFO,
//! answering `docker logs`) are behind [`LogDriver`], which the daemon
//! implements; this module binds no socket.
//!
//! | path | body | answer |
//! |------|------|--------|
//! | `/Plugin.Activate` | empty | `{"Implements":["LogDriver"]}` |
//! | `/LogDriver.Capabilities` | empty | `{"Cap":{"ReadLogs":true}}` |
//! | `/LogDriver.StartLogging` | [`StartLogging`] | `{"Err":""}` once [`LogDriver::start_logging`] returned |
//! | `/LogDriver.StopLogging` | [`StopLogging`] | `{"Err":""}` once [`LogDriver::stop_logging`] returned |
//! | `/LogDriver.ReadLogs` | [`ReadLogs`] | 200 and the [`LogDriver::Logs`] stream of frames |
//!
//! Every call is a `POST` (the router in [`router`] routes no other
//! method). A failure is `{"Err":"what went wrong"}` with a status that is
//! not 200: 400 for a body that is not what the call takes (including
//! log-opts the driver does not know, checked here before any side
//! effect), 404 for an unknown path, 413 for a body over [`MAX_BODY_LEN`],
//! 500 when the side effect failed. dockerd shows the `Err` text to the
//! user (`docker run` fails with it). A non-200 status matters for
//! ReadLogs: dockerd reads a 200 answer as a stream of frames, so an error
//! must not come with 200. For the other calls dockerd reads `Err` from
//! the body whatever the status.
//!
//! One bad request never affects another: each call is parsed on its own
//! and nothing is changed before the body has been checked.

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Serialize;

use super::info::{
    ActivateAnswer, BodyError, CapabilitiesAnswer, ContainerMeta, ErrAnswer, InfoError, ReadLogs,
    StartLogging, StopLogging,
};

/// The content type of every JSON answer.
pub const PLUGIN_CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

/// The content type of a ReadLogs stream (what Docker's plugin helpers
/// send; dockerd does not look at it).
pub const LOGS_CONTENT_TYPE: &str = "application/x-json-stream";

/// The largest request body taken, in bytes. A StartLogging body is
/// mostly the container's environment and labels, a few KiB; this leaves
/// room for very large ones and keeps a hostile client cheap.
pub const MAX_BODY_LEN: usize = 4 * 1024 * 1024;

/// The calls of the logging-plugin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Activate,
    Capabilities,
    StartLogging,
    StopLogging,
    ReadLogs,
}

impl Call {
    pub const ALL: [Call; 5] = [
        Call::Activate,
        Call::Capabilities,
        Call::StartLogging,
        Call::StopLogging,
        Call::ReadLogs,
    ];

    /// The URL path dockerd posts to.
    pub fn path(self) -> &'static str {
        match self {
            Call::Activate => "/Plugin.Activate",
            Call::Capabilities => "/LogDriver.Capabilities",
            Call::StartLogging => "/LogDriver.StartLogging",
            Call::StopLogging => "/LogDriver.StopLogging",
            Call::ReadLogs => "/LogDriver.ReadLogs",
        }
    }

    pub fn from_path(path: &str) -> Option<Call> {
        Call::ALL.into_iter().find(|c| c.path() == path)
    }
}

/// The side effects of the API, implemented by the daemon's Docker source.
///
/// Each method is called only with a request that parsed and passed the
/// checks of [`info`](super::info); its error's `Display` text becomes the
/// `Err` dockerd shows the user, so it should say what to do.
pub trait LogDriver: Send + Sync {
    /// The body of a ReadLogs answer: the length-prefixed frames
    /// ([`super::frame::ReadLogsEncoder`]), flushed per frame, ending when
    /// the answer is complete (or, with `follow`, when the client goes
    /// away).
    type Logs: Send;
    type Error: std::error::Error + Send;

    /// Opens `req.file` and starts reading it before returning: dockerd
    /// starts the container once this answers. `meta` is what the
    /// container's entries carry, already checked.
    fn start_logging(
        &self,
        req: StartLogging,
        meta: ContainerMeta,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Reads what is left in `req.file` until it would block, then stops
    /// reading it: dockerd closes its end after this answers, so what was
    /// not read by then is lost.
    fn stop_logging(
        &self,
        req: StopLogging,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Starts the answer to `docker logs` for the container `req.info`
    /// names (by `ContainerID`), after the options in `req.config`.
    fn read_logs(
        &self,
        req: ReadLogs,
    ) -> impl Future<Output = Result<Self::Logs, Self::Error>> + Send;
}

/// What to send back for one call.
#[derive(Debug)]
pub enum Answer<L> {
    /// A JSON document with [`PLUGIN_CONTENT_TYPE`].
    Json { status: StatusCode, body: Vec<u8> },
    /// A ReadLogs stream, status 200, [`LOGS_CONTENT_TYPE`].
    Logs(L),
}

impl<L> Answer<L> {
    fn json(status: StatusCode, value: &impl Serialize) -> Answer<L> {
        Answer::Json {
            status,
            body: serde_json::to_vec(value).expect("answers serialize"),
        }
    }

    fn ok() -> Answer<L> {
        Answer::json(StatusCode::OK, &ErrAnswer::default())
    }

    fn err(status: StatusCode, message: impl ToString) -> Answer<L> {
        Answer::json(
            status,
            &ErrAnswer {
                err: message.to_string(),
            },
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Answer::Json { status, .. } => *status,
            Answer::Logs(_) => StatusCode::OK,
        }
    }

    /// The `Err` text of a JSON answer, if it is an error.
    pub fn error_text(&self) -> Option<String> {
        match self {
            Answer::Json { body, .. } => serde_json::from_slice::<ErrAnswer>(body)
                .ok()
                .map(|a| a.err)
                .filter(|e| !e.is_empty()),
            Answer::Logs(_) => None,
        }
    }
}

/// Why a call was refused before any side effect.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error(
        "ringtail's docker plugin has no call {path:?}: it serves {}",
        call_list()
    )]
    UnknownCall { path: String },
    #[error("the {call:?} body is {len} bytes, over the limit of {MAX_BODY_LEN}")]
    TooBig { call: Call, len: usize },
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Info(#[from] InfoError),
}

fn call_list() -> String {
    let paths: Vec<&str> = Call::ALL.iter().map(|c| c.path()).collect();
    paths.join(", ")
}

impl Refused {
    fn status(&self) -> StatusCode {
        match self {
            Refused::UnknownCall { .. } => StatusCode::NOT_FOUND,
            Refused::TooBig { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refused::Body(_) | Refused::Info(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Answers one call: `path` as dockerd posted it, `body` the whole request
/// body.
pub async fn handle<D: LogDriver>(driver: &D, path: &str, body: &[u8]) -> Answer<D::Logs> {
    let Some(call) = Call::from_path(path) else {
        let r = Refused::UnknownCall {
            path: path.to_string(),
        };
        return Answer::err(r.status(), r);
    };
    if body.len() > MAX_BODY_LEN {
        let r = Refused::TooBig {
            call,
            len: body.len(),
        };
        return Answer::err(r.status(), r);
    }
    match answer(driver, call, body).await {
        Ok(answer) => answer,
        Err(r) => Answer::err(r.status(), r),
    }
}

async fn answer<D: LogDriver>(
    driver: &D,
    call: Call,
    body: &[u8],
) -> Result<Answer<D::Logs>, Refused> {
    let failed = |e: D::Error| Answer::err(StatusCode::INTERNAL_SERVER_ERROR, e);
    Ok(match call {
        // dockerd sends these with an empty body; whatever comes is ignored.
        Call::Activate => Answer::json(StatusCode::OK, &ActivateAnswer::default()),
        Call::Capabilities => Answer::json(StatusCode::OK, &CapabilitiesAnswer::default()),
        Call::StartLogging => {
            let req = StartLogging::parse(body)?;
            let meta = ContainerMeta::from_info(&req.info)?;
            match driver.start_logging(req, meta).await {
                Ok(()) => Answer::ok(),
                Err(e) => failed(e),
            }
        }
        Call::StopLogging => {
            let req = StopLogging::parse(body)?;
            match driver.stop_logging(req).await {
                Ok(()) => Answer::ok(),
                Err(e) => failed(e),
            }
        }
        Call::ReadLogs => {
            let req = ReadLogs::parse(body)?;
            match driver.read_logs(req).await {
                Ok(logs) => Answer::Logs(logs),
                Err(e) => failed(e),
            }
        }
    })
}

impl<L: Into<Body>> IntoResponse for Answer<L> {
    fn into_response(self) -> Response {
        match self {
            Answer::Json { status, body } => {
                (status, [(header::CONTENT_TYPE, PLUGIN_CONTENT_TYPE)], body).into_response()
            }
            Answer::Logs(logs) => {
                ([(header::CONTENT_TYPE, LOGS_CONTENT_TYPE)], logs.into()).into_response()
            }
        }
    }
}

/// An axum router serving the API with `driver`: `POST /{call}` for every
/// call, bodies up to [`MAX_BODY_LEN`]. Serve it on the plugin socket
/// (`/run/docker/plugins/NAME.sock`, or the managed plugin's socket).
pub fn router<D>(driver: Arc<D>) -> Router
where
    D: LogDriver + 'static,
    D::Logs: Into<Body>,
{
    Router::new()
        .route(
            "/{call}",
            axum::routing::post(
                |State(driver): State<Arc<D>>, Path(call): Path<String>, body: Bytes| async move {
                    handle(&*driver, &format!("/{call}"), &body).await
                },
            ),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_LEN))
        .with_state(driver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records the calls that reached the side effects.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
        fail: bool,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the FIFO could not be opened: test failure")]
    struct Failed;

    impl LogDriver for Recorder {
        type Logs = Vec<u8>;
        type Error = Failed;

        async fn start_logging(
            &self,
            req: StartLogging,
            meta: ContainerMeta,
        ) -> Result<(), Failed> {
            self.calls.lock().unwrap().push(format!(
                "start {} {}",
                req.file.display(),
                meta.source
            ));
            if self.fail {
                Err(Failed)
            } else {
                Ok(())
            }
        }

        async fn stop_logging(&self, req: StopLogging) -> Result<(), Failed> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("stop {}", req.file.display()));
            Ok(())
        }

        async fn read_logs(&self, req: ReadLogs) -> Result<Vec<u8>, Failed> {
            self.calls.lock().unwrap().push(format!(
                "read {} {:?}",
                req.info.container_id, req.config.tail
            ));
            if self.fail {
                Err(Failed)
            } else {
                Ok(b"frames".to_vec())
            }
        }
    }

    fn run<D: LogDriver>(d: &D, path: &str, body: &str) -> Answer<D::Logs> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(handle(d, path, body.as_bytes()))
    }

    fn json<L: std::fmt::Debug>(a: &Answer<L>) -> (u16, String) {
        match a {
            Answer::Json { status, body } => {
                (status.as_u16(), String::from_utf8(body.clone()).unwrap())
            }
            Answer::Logs(l) => panic!("expected JSON, got logs {l:?}"),
        }
    }

    const START: &str =
        r#"{"File":"/run/docker/logging/f1","Info":{"ContainerID":"c1","ContainerName":"/web"}}"#;

    #[test]
    fn the_calls_as_dockerd_makes_them() {
        let d = Recorder::default();
        assert_eq!(
            json(&run(&d, "/Plugin.Activate", "")),
            (200, r#"{"Implements":["LogDriver"]}"#.into())
        );
        assert_eq!(
            json(&run(&d, "/LogDriver.Capabilities", "")),
            (200, r#"{"Cap":{"ReadLogs":true}}"#.into())
        );
        assert_eq!(
            json(&run(&d, "/LogDriver.StartLogging", START)),
            (200, r#"{"Err":""}"#.into())
        );
        let logs = run(
            &d,
            "/LogDriver.ReadLogs",
            r#"{"Info":{"ContainerID":"c1"},"Config":{"Tail":-1}}"#,
        );
        assert!(matches!(&logs, Answer::Logs(l) if l == b"frames"));
        assert_eq!(
            json(&run(
                &d,
                "/LogDriver.StopLogging",
                r#"{"File":"/run/docker/logging/f1"}"#
            )),
            (200, r#"{"Err":""}"#.into())
        );
        assert_eq!(
            *d.calls.lock().unwrap(),
            [
                "start /run/docker/logging/f1 web",
                "read c1 None",
                "stop /run/docker/logging/f1"
            ]
        );
    }

    #[test]
    fn refusals_are_clear_and_touch_nothing() {
        let d = Recorder::default();
        let cases = [
            (
                "/LogDriver.StartLogging",
                "{",
                400,
                "the StartLogging body is not valid JSON",
            ),
            (
                "/LogDriver.StartLogging",
                "",
                400,
                "the StartLogging body is not valid JSON",
            ),
            (
                "/LogDriver.StartLogging",
                r#"{"File":"/f","Info":{"ContainerID":"c","Config":{"tag":"{{.X}}"}}}"#,
                400,
                "{{.X}} is not supported",
            ),
            (
                "/LogDriver.StartLogging",
                r#"{"File":"/f","Info":{"ContainerID":"c","Config":{"max-size":"1m"}}}"#,
                400,
                "unknown log-opt \"max-size\"",
            ),
            (
                "/LogDriver.StopLogging",
                "[]",
                400,
                "the StopLogging body is not valid JSON",
            ),
            (
                "/LogDriver.ReadLogs",
                r#"{"Info":{"ContainerID":"c"},"Config":{"Since":"x"}}"#,
                400,
                "Config.Since \"x\"",
            ),
            (
                "/LogDriver.Nope",
                "",
                404,
                "has no call \"/LogDriver.Nope\": it serves /Plugin.Activate",
            ),
        ];
        for (path, body, status, text) in cases {
            let a = run(&d, path, body);
            assert_eq!(a.status().as_u16(), status, "{path} {body}");
            let err = a.error_text().unwrap();
            assert!(err.contains(text), "{path} {body}: {err}");
        }
        let big = format!(r#"{{"File":"/f","x":"{}"}}"#, "a".repeat(MAX_BODY_LEN));
        let a = run(&d, "/LogDriver.StopLogging", &big);
        assert_eq!(a.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(d.calls.lock().unwrap().is_empty(), "no side effect ran");
    }

    #[test]
    fn side_effect_failures_are_500_with_their_text() {
        let d = Recorder {
            fail: true,
            ..Recorder::default()
        };
        let a = run(&d, "/LogDriver.StartLogging", START);
        assert_eq!(
            json(&a),
            (
                500,
                r#"{"Err":"the FIFO could not be opened: test failure"}"#.into()
            )
        );
        let a = run(
            &d,
            "/LogDriver.ReadLogs",
            r#"{"Info":{"ContainerID":"c1"}}"#,
        );
        assert_eq!(
            a.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "never a 200 for a failed ReadLogs"
        );
    }

    #[test]
    fn paths_round_trip() {
        for c in Call::ALL {
            assert_eq!(Call::from_path(c.path()), Some(c));
        }
        assert_eq!(Call::from_path("/LogDriver.startlogging"), None);
    }
}
