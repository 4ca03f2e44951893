//! The built-in dashboard at `/`: a page for people without Grafana.
//!
//! What it shows: the sources in the ring with their entry counts and
//! rates (`/api/v1/sources`), a log-volume chart of entries per source
//! over time (stacked bars from a Loki metric query on
//! `/loki/api/v1/query_range`, drawn on a canvas), and a live tail over
//! server-sent events (`/api/v1/follow`, resumed with `Last-Event-ID`)
//! with a filter (source, text or regex), pause and resume; clicking a
//! source anywhere filters by it. When the daemon forwards, a card lists
//! each forwarder (sink) with its target, state, lag in entries and
//! seconds, entries shipped, retries and entries evicted before they were
//! shipped (`/api/v1/stats`, every 2 s). It follows the system's light or
//! dark preference.
//!
//! What it promises:
//! - **Offline.** The page, script, style sheet and icon are compiled into
//!   the binary and served from these routes; the page loads nothing from
//!   anywhere else (its Content-Security-Policy says so to the browser).
//! - **Light on a big ring.** The page keeps at most 2000 lines in the
//!   document, starts the tail with the last 200 entries, and renders new
//!   ones once per animation frame; the chart is one metric query (one pass
//!   over the range) every few seconds.
//! - **Same API as everyone.** The page uses only the public HTTP and Loki
//!   APIs, with a bearer token when the daemon requires one (asked for once
//!   and kept in the tab's session storage). The page itself holds no log
//!   data.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");
const ICON: &str = include_str!("favicon.svg");

/// Only this origin, and no inline script or style: the page cannot be
/// made to load or run anything else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Every route of the dashboard as `(method, path)`, for the API spec check.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/dashboard/app.js"),
    ("GET", "/dashboard/style.css"),
    ("GET", "/dashboard/favicon.svg"),
];

/// The dashboard's routes: `/` and its assets under `/dashboard/`.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/dashboard/favicon.svg",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Embedded assets change with the binary: revalidate each time.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}
