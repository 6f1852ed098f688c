//! Optional HTTP basic authentication.
//!
//! The container publishes WebDAV on the host's loopback only, so by default there is none.
//! When the port is reachable by others (a shared host, a published address), one user and
//! password protect it; the user becomes the lock owner (principal) in LOCK replies.

use headers::authorization::Basic;
use headers::{Authorization, HeaderMapExt};
use http::HeaderMap;

/// One user and password.
#[derive(Clone)]
pub struct BasicAuth {
    user: String,
    password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// Both must be non-empty; the user must not contain `:` (basic auth's separator).
    pub fn new(user: String, password: String) -> Result<Self, String> {
        if user.is_empty() || user.contains(':') {
            return Err("the WebDAV user must be non-empty and must not contain ':'".into());
        }
        if password.is_empty() {
            return Err("the WebDAV password is empty".into());
        }
        Ok(BasicAuth { user, password })
    }

    /// The user name, if the request carries this user's credentials.
    pub fn check(&self, headers: &HeaderMap) -> Option<&str> {
        let Authorization(basic) = headers.typed_get::<Authorization<Basic>>()?;
        let user_ok = constant_time_eq(basic.username().as_bytes(), self.user.as_bytes());
        let pass_ok = constant_time_eq(basic.password().as_bytes(), self.password.as_bytes());
        (user_ok & pass_ok).then_some(self.user.as_str())
    }
}

/// Compares without an early exit on the first differing byte (the length still shows).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn accepts_only_the_right_pair() {
        let auth = BasicAuth::new("someuser".into(), "somepass".into()).unwrap();
        // base64("someuser:somepass")
        assert_eq!(
            auth.check(&headers("Basic c29tZXVzZXI6c29tZXBhc3M=")),
            Some("someuser")
        );
        // base64("someuser:wrong")
        assert_eq!(auth.check(&headers("Basic c29tZXVzZXI6d3Jvbmc=")), None);
        assert_eq!(auth.check(&headers("Bearer abc")), None);
        assert_eq!(auth.check(&headers("Basic !!!")), None);
        assert_eq!(auth.check(&HeaderMap::new()), None);
    }

    #[test]
    fn rejects_unusable_settings() {
        assert!(BasicAuth::new("".into(), "p".into()).is_err());
        assert!(BasicAuth::new("a:b".into(), "p".into()).is_err());
        assert!(BasicAuth::new("a".into(), "".into()).is_err());
        assert!(
            !format!("{:?}", BasicAuth::new("a".into(), "secret".into()).unwrap())
                .contains("secret")
        );
    }
}
