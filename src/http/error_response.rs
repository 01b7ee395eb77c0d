//! The responses the proxy writes itself (a `502` for a backend that refused, a `400` for a bad
//! request, the admin server's answers): a standard reason phrase and a complete, closed,
//! self-describing response.

/// The standard reason phrase for the statuses the proxy produces itself.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// Appends a complete error response to `out`: `Connection: close` always (the framing of what
/// follows on the connection is in doubt after any proxy-made error), and a one-line body that
/// names the status, the reason and the request id, e.g.
/// `502 Bad Gateway: upstream "api" refused the connection (request id 3f2a…)`.
pub fn write_error_response(
    status: u16,
    detail: &str,
    request_id: &str,
    head_only: bool,
    out: &mut Vec<u8>,
) {
    use std::io::Write;
    let phrase = reason_phrase(status);
    let body = format!("{status} {phrase}: {detail} (request id {request_id})\n");
    let _ = write!(
        out,
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         X-Request-Id: {request_id}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_is_framed_and_names_reason_and_id() {
        let mut out = Vec::new();
        write_error_response(
            502,
            "upstream \"api\" refused the connection",
            "abc",
            false,
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
        assert!(head.contains("Connection: close"));
        assert!(head.contains("X-Request-Id: abc"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(
            body,
            "502 Bad Gateway: upstream \"api\" refused the connection (request id abc)\n"
        );
    }
}
