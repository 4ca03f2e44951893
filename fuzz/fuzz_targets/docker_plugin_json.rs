//! Fuzzes the logging-plugin API's request handling: every call's body, as
//! dockerd (or anything else that reaches the plugin socket) may send it.
//!
//! Input layout: byte 0 picks the call (one of the five, or an unknown
//! path); the rest is the body. With byte 0's bit 7 set, the body is built
//! from a StartLogging template whose log-opts `tag`, `labels-regex` and
//! `env` (and one env entry) are cut from the input, so the tag parser,
//! the regex selection and the label rules get exercised past JSON parsing.
//!
//! Checked: no panic; every answer is 200 or a JSON `{"Err":...}` with a
//! non-empty message and a status that is not 200; a ReadLogs error is
//! never a 200; what reached the side effects passed the checks (an
//! absolute File, a container id, a source name within the ring's limit
//! and without NUL, built-in labels intact).
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use ringtail::entry::Stream;
use ringtail::ring::MAX_SOURCE_LEN;
use ringtail::sources::docker::http::{handle, Answer, Call, LogDriver};
use ringtail::sources::docker::info::{ContainerMeta, ReadLogs, StartLogging, StopLogging};
use ringtail::sources::docker::tag::TagTemplate;

#[derive(Default)]
struct Checker {
    reached: Mutex<u32>,
}

#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

impl LogDriver for Checker {
    type Logs = ();
    type Error = Never;

    async fn start_logging(&self, req: StartLogging, meta: ContainerMeta) -> Result<(), Never> {
        assert!(req.file.is_absolute());
        assert!(!req.info.container_id.is_empty());
        assert!(meta.source.len() <= MAX_SOURCE_LEN);
        assert!(!meta.source.contains('\0'));
        let o = meta.origin(Some(Stream::Stderr));
        assert_eq!(
            o.label("container_id"),
            Some(req.info.container_id.as_str())
        );
        assert_eq!(o.label("container_name"), Some(req.info.name()));
        assert_eq!(o.label("stream"), Some("stderr"));
        // The source is the accepted template, rendered.
        let tag = req.info.config.get("tag").map_or("", String::as_str);
        let t = TagTemplate::parse(tag).expect("StartLogging checked the tag");
        let rendered = t.render(&req.info);
        if rendered.len() <= MAX_SOURCE_LEN && !rendered.contains('\0') {
            assert_eq!(meta.source, rendered);
        }
        *self.reached.lock().unwrap() += 1;
        Ok(())
    }

    async fn stop_logging(&self, req: StopLogging) -> Result<(), Never> {
        assert!(req.file.is_absolute());
        *self.reached.lock().unwrap() += 1;
        Ok(())
    }

    async fn read_logs(&self, req: ReadLogs) -> Result<(), Never> {
        assert!(!req.info.container_id.is_empty());
        *self.reached.lock().unwrap() += 1;
        Ok(())
    }
}

/// Runs a future that never waits (the checker's side effects are
/// immediate).
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the handler waited on nothing"),
    }
}

fn json_str(bytes: &[u8]) -> String {
    serde_json::to_string(&String::from_utf8_lossy(bytes)).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (path, body): (&str, Vec<u8>) = if sel & 128 != 0 {
        let parts: Vec<&[u8]> = rest.splitn(4, |&b| b == 0).collect();
        let part = |i: usize| parts.get(i).copied().unwrap_or(b"");
        let body = format!(
            r#"{{"File":"/run/docker/logging/f","Info":{{"ContainerID":"c0ffee","ContainerName":"/web","ContainerImageName":"bb","Config":{{"tag":{},"labels-regex":{},"env":{}}},"ContainerEnv":[{}],"ContainerLabels":{{"com.x":"1","stream":"fake"}}}}}}"#,
            json_str(part(0)),
            json_str(part(1)),
            json_str(part(2)),
            json_str(part(3)),
        );
        (Call::StartLogging.path(), body.into_bytes())
    } else {
        let path = match sel % 6 {
            5 => "/LogDriver.Unknown",
            i => Call::ALL[i as usize].path(),
        };
        (path, rest.to_vec())
    };
    let checker = Checker::default();
    let answer = now(handle(&checker, path, &body));
    let reached = *checker.reached.lock().unwrap();
    match &answer {
        Answer::Logs(()) => assert_eq!(path, Call::ReadLogs.path()),
        Answer::Json { status, .. } if status.as_u16() == 200 => {
            assert!(answer.error_text().is_none(), "a 200 with an error");
        }
        Answer::Json { status, .. } => {
            let err = answer.error_text().expect("a failure says why");
            assert!(!err.is_empty());
            assert_ne!(status.as_u16(), 200);
            assert_eq!(reached, 0, "a refused call reached a side effect");
        }
    }
});
