//! `GET /`: the live dashboard, a page compiled into the binary (no CDN, works offline). Plain
//! HTML, CSS and JavaScript: the script polls `/api/status` once a second and draws the charts on
//! `<canvas>` itself, so there is nothing to fetch from elsewhere and nothing to build.

use super::http::AdminResponse;

const INDEX: &str = include_str!("assets/index.html");
pub(super) const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

/// The page.
pub fn page() -> AdminResponse {
    AdminResponse::new(200, "text/html; charset=utf-8", INDEX).with_header(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    )
}

/// `/assets/NAME`.
pub fn asset(name: &str) -> AdminResponse {
    match name {
        "dashboard.js" => AdminResponse::new(200, "text/javascript; charset=utf-8", SCRIPT),
        "dashboard.css" => AdminResponse::new(200, "text/css; charset=utf-8", STYLE),
        _ => AdminResponse::error(404, format!("no asset {name:?}")),
    }
}
