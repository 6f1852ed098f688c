//! The little HTTP/1.1 the loopback stand-ins for AWS endpoints need
//! ([`credentials_endpoint`](crate::credentials_endpoint),
//! [`sts_sso_endpoint`](crate::sts_sso_endpoint)): one request per connection, read with
//! bounds (64 KiB of head, 64 KiB of `Content-Length` body, no chunked bodies), one answer,
//! then the connection closes. Hand-written because the SDK clients under test only need
//! this much, and a bounded reader that reports what was wrong is what the tests want.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most a request head or body may take.
const MAX_PART: usize = 64 * 1024;

/// A request as read from the socket.
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path without the query string.
    pub(crate) path: String,
    pub(crate) query: String,
    /// Lower-cased names, values as sent, in order (a name may repeat).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn line(&self) -> String {
        if self.query.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {}?{}", self.method, self.path, self.query)
        }
    }
}

/// Reads one HTTP/1.1 request with a `Content-Length` body. `Ok(None)`: the peer closed
/// before sending anything.
pub(crate) async fn read_request(stream: &mut TcpStream) -> Result<Option<Request>, String> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if data.len() > MAX_PART {
            return Err("request head larger than 64 KiB".into());
        }
        match stream.read(&mut buf).await {
            Ok(0) if data.is_empty() => return Ok(None),
            Ok(0) => return Err("connection closed inside the request head".into()),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    };
    let head = std::str::from_utf8(&data[..head_end])
        .map_err(|_| "request head is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(_version)) = (first.next(), first.next(), first.next())
    else {
        return Err("malformed request line".into());
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut request = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
    };
    if request.header("transfer-encoding").is_some() {
        return Err("chunked bodies are not supported here".into());
    }
    let length: usize = match request.header("content-length") {
        None => 0,
        Some(v) => v.parse().map_err(|_| format!("bad content-length {v:?}"))?,
    };
    if length > MAX_PART {
        return Err("body larger than 64 KiB".into());
    }
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut buf).await {
            Ok(0) => return Err("connection closed inside the body".into()),
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    body.truncate(length);
    request.body = body;
    Ok(Some(request))
}

/// Writes one answer and closes the connection (errors are the peer's problem: ignored).
pub(crate) async fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
) {
    let mut response = format!(
        "HTTP/1.1 {status} {}\r\n",
        if status < 300 { "OK" } else { "Error" }
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(response.as_bytes()).await.ok();
    stream.shutdown().await.ok();
}
