//! Refusing requests that a web page, not a WebDAV client, made: DNS rebinding and cross-site
//! requests.
//!
//! The server listens on the host's loopback, often without a password, and a browser on the
//! same machine can reach loopback too. A page from `attacker.example` can re-point its own name
//! at 127.0.0.1 (DNS rebinding): the browser then treats the server as same-origin and lets the
//! page read and write the bucket, but every such request carries `Host: attacker.example:PORT`.
//! So only a Host naming this server is accepted: a loopback name or address, or a name given
//! with `--allow-host`, with the port clients use (`--public-port`, by default the listening
//! port). Any IPv4 loopback literal (127.0.0.0/8) is accepted: a literal address cannot be
//! re-pointed by DNS, so it cannot carry a rebinding.
//!
//! A page may also *send* requests to `http://127.0.0.1:PORT` without reading the answer (a
//! form post, a `fetch` in no-cors mode); browsers mark those with an `Origin` header naming the
//! page. WebDAV clients (Finder, davfs2, litmus) send none, so an `Origin` other than this server
//! itself is refused.

use std::net::Ipv4Addr;

use http::uri::Authority;
use http::{HeaderMap, StatusCode, Uri, Version};

/// Which Host and Origin values name this server.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// Extra accepted names, lower case (`--allow-host`).
    extra: Vec<String>,
    /// The port clients use.
    port: u16,
}

/// Why a request is refused: the status and a message naming the fix.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 400 (no Host), 403 (a foreign Origin) or 421 Misdirected Request (a Host that does
    /// not name this server).
    pub status: StatusCode,
    /// The response body: what was refused and which names are accepted.
    pub message: String,
}

impl HostPolicy {
    /// Accepts the loopback names and `extra` (host names or addresses, IPv6 in brackets), on
    /// `port`. Fails on a value that is not a host name.
    pub fn new(extra: &[String], port: u16) -> Result<Self, String> {
        let mut names = Vec::new();
        for name in extra.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            match name.parse::<Authority>() {
                Ok(a) if a.port().is_none() && a.as_str() == name => {
                    names.push(name.to_ascii_lowercase())
                }
                _ => {
                    return Err(format!(
                        "--allow-host {name:?} (WEBDAV_ALLOW_HOSTS): give a host name or address \
                         without port or scheme, IPv6 in brackets; the port is --public-port"
                    ));
                }
            }
        }
        Ok(HostPolicy { extra: names, port })
    }

    /// The port clients use.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn name_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        host == "localhost"
            || host == "[::1]"
            || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
            || self.extra.contains(&host)
    }

    fn accepted(&self) -> String {
        let mut names = vec!["localhost", "127.0.0.1", "[::1]"];
        names.extend(self.extra.iter().map(String::as_str));
        format!("{} on port {}", names.join(", "), self.port)
    }

    /// True if `value` (`host[:port]`, no port meaning 80) names this server.
    fn authority_ok(&self, value: &str) -> bool {
        match value.parse::<Authority>() {
            Ok(a) => self.name_allowed(a.host()) && a.port_u16().unwrap_or(80) == self.port,
            Err(_) => false,
        }
    }

    /// Checks the request line and headers; `Err` is the answer to send instead.
    pub fn check(&self, version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers.get(http::header::HOST).map(|v| v.to_str());
        match host {
            None if version >= Version::HTTP_11 => {
                return Err(Refusal {
                    status: StatusCode::BAD_REQUEST,
                    message: "refused: an HTTP/1.1 request without a Host header".into(),
                });
            }
            None => {}
            Some(value) => {
                let value = value.unwrap_or("(not text)");
                if !self.authority_ok(value) {
                    return Err(self.misdirected("Host", value));
                }
            }
        }
        // An absolute request target (`PUT http://host:port/x`) names the server too.
        if let Some(authority) = uri.authority()
            && !self.authority_ok(authority.as_str())
        {
            return Err(self.misdirected("request target", authority.as_str()));
        }
        if let Some(origin) = headers.get(http::header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("(not text)");
            if !self.origin_ok(origin) {
                return Err(Refusal {
                    status: StatusCode::FORBIDDEN,
                    message: format!(
                        "refused: Origin {origin:?} is a web page of another site (accepted: \
                         http:// and {}). WebDAV clients send no Origin; if you serve a web \
                         page under another name or port, add the name with --allow-host \
                         (WEBDAV_ALLOW_HOSTS) or set --public-port (WEBDAV_PUBLIC_PORT)",
                        self.accepted()
                    ),
                });
            }
        }
        Ok(())
    }

    fn origin_ok(&self, origin: &str) -> bool {
        let Ok(uri) = origin.parse::<Uri>() else {
            return false;
        };
        uri.scheme_str() == Some("http")
            && uri.path_and_query().is_none_or(|p| p.as_str() == "/")
            && uri
                .authority()
                .is_some_and(|a| self.authority_ok(a.as_str()))
    }

    fn misdirected(&self, what: &str, value: &str) -> Refusal {
        Refusal {
            status: StatusCode::MISDIRECTED_REQUEST,
            message: format!(
                "refused: {what} {value:?} does not name this server (accepted: {}); this \
                 protects the files against web pages using DNS rebinding. If clients reach \
                 the server under another port (a published port), set --public-port PORT \
                 (WEBDAV_PUBLIC_PORT); under another name, add --allow-host NAME \
                 (WEBDAV_ALLOW_HOSTS)",
                self.accepted()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(policy: &HostPolicy, host: Option<&str>, origin: Option<&str>) -> Option<u16> {
        let mut headers = HeaderMap::new();
        if let Some(h) = host {
            headers.insert(http::header::HOST, h.parse().unwrap());
        }
        if let Some(o) = origin {
            headers.insert(http::header::ORIGIN, o.parse().unwrap());
        }
        let uri: Uri = "/x".parse().unwrap();
        policy
            .check(Version::HTTP_11, &uri, &headers)
            .err()
            .map(|r| r.status.as_u16())
    }

    #[test]
    fn hosts() {
        let p = HostPolicy::new(&["My-Mac.local".into()], 8080).unwrap();
        for ok in [
            "localhost:8080",
            "LOCALHOST:8080",
            "127.0.0.1:8080",
            "127.1.2.3:8080",
            "[::1]:8080",
            "my-mac.local:8080",
        ] {
            assert_eq!(check(&p, Some(ok), None), None, "{ok}");
        }
        for bad in [
            "attacker.example:8080",
            "localhost:8081",
            "localhost",
            "127.0.0.1.attacker.example:8080",
            "10.0.0.1:8080",
            "[::2]:8080",
            "localhost:8080@x",
            "",
        ] {
            assert_eq!(check(&p, Some(bad), None), Some(421), "{bad}");
        }
        assert_eq!(check(&p, None, None), Some(400));
        let p80 = HostPolicy::new(&[], 80).unwrap();
        assert_eq!(check(&p80, Some("localhost"), None), None);
    }

    #[test]
    fn origins() {
        let p = HostPolicy::new(&[], 8080).unwrap();
        let host = Some("localhost:8080");
        assert_eq!(check(&p, host, Some("http://localhost:8080")), None);
        assert_eq!(check(&p, host, Some("http://127.0.0.1:8080")), None);
        for bad in [
            "http://attacker.example",
            "http://attacker.example:8080",
            "https://localhost:8080",
            "http://localhost:3000",
            "http://localhost",
            "null",
            "http://localhost:8080/x",
        ] {
            assert_eq!(check(&p, host, Some(bad)), Some(403), "{bad}");
        }
    }

    #[test]
    fn allow_host_values_are_checked() {
        assert!(HostPolicy::new(&["a.example:80".into()], 1).is_err());
        assert!(HostPolicy::new(&["http://a.example".into()], 1).is_err());
        assert!(HostPolicy::new(&["[::2]".into(), " b ".into(), "".into()], 1).is_ok());
    }
}
