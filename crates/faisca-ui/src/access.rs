//! Who may read the UI, the REST API and `/metrics`.
//!
//! With authentication on (a cluster secret, see `faisca_common::auth`), every request carries a
//! credential — `Authorization: Bearer …`, or the `faisca_token` cookie that the `/login` form
//! sets (HttpOnly, SameSite=Strict, Secure over HTTPS) — that is the cluster secret or a user
//! token. Pages without one are sent to `/login`; the REST API and `/metrics` answer 401. A
//! metrics port also accepts the bearer token of `faisca.metrics.tokenFile` (what a Prometheus
//! scrape config holds), and only that when authentication is off. The stylesheet and script
//! are served to anyone (the login page uses them).

use std::sync::Arc;

use faisca_common::auth::{Authenticator, SecretDigest};

/// The cookie the login form sets.
pub const COOKIE: &str = "faisca_token";

/// What a server checks before answering.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The driver's (or history server's) authenticator, when authentication is on.
    pub auth: Option<Arc<Authenticator>>,
    /// The metrics bearer token (`faisca.metrics.tokenFile`), when set.
    pub metrics_token: Option<SecretDigest>,
    /// Whether the server is HTTPS (the cookie is then `Secure`).
    pub https: bool,
}

/// What a request may do.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it.
    Allowed,
    /// A page without a valid credential: send the browser to `/login`.
    Login,
    /// An API or metrics call without a valid credential: 401 with this text.
    Refused(&'static str),
}

impl Access {
    /// The access of a process: its authenticator (`None`: authentication off) and the token of
    /// `faisca.metrics.tokenFile`; `https` is set by the server that uses it.
    pub fn from_config(
        config: &faisca_common::FaiscaConfig,
        auth: Option<Arc<Authenticator>>,
    ) -> faisca_common::Result<Self> {
        Ok(Access {
            auth,
            metrics_token: config.metrics_token()?.map(|t| SecretDigest::of(&t)),
            https: false,
        })
    }

    /// Whether anything is checked at all.
    pub fn is_open(&self) -> bool {
        self.auth.is_none() && self.metrics_token.is_none()
    }

    /// Whether `credential` is accepted for `path`.
    pub fn verdict(&self, path: &str, credential: Option<&str>) -> Verdict {
        if self.is_open() || path == "/login" || path.starts_with("/static/") {
            return Verdict::Allowed;
        }
        let metrics = path == "/metrics" || path.starts_with("/metrics/");
        if metrics
            && let (Some(expected), Some(given)) = (&self.metrics_token, credential)
            && expected.matches(given)
        {
            return Verdict::Allowed;
        }
        if let Some(auth) = &self.auth
            && auth.authenticate(credential).is_ok()
        {
            return Verdict::Allowed;
        }
        if self.auth.is_none() && !metrics {
            // Only the metrics are guarded here (a metrics token without authentication).
            return Verdict::Allowed;
        }
        if metrics || path.starts_with("/api/") {
            Verdict::Refused(if credential.is_some() {
                "the credential is not accepted here"
            } else {
                "this server requires a token: send 'Authorization: Bearer <token>' (a user token, the cluster secret, or for /metrics the faisca.metrics.tokenFile token)"
            })
        } else {
            Verdict::Login
        }
    }

    /// Whose view an allowed request with `credential` gets: a user token sees that user's jobs
    /// and streaming queries only; the cluster secret (and anyone, with authentication off)
    /// everything.
    pub fn viewer(&self, credential: Option<&str>) -> Option<String> {
        let auth = self.auth.as_ref()?;
        match auth.authenticate(credential) {
            Ok(faisca_common::auth::Principal::User(user)) => Some(user),
            // The cluster, or a metrics scrape (which reads only counters).
            _ => None,
        }
    }

    /// The `Set-Cookie` value that keeps `token` for the browser's later requests.
    pub fn cookie(&self, token: &str) -> String {
        format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{}",
            if self.https { "; Secure" } else { "" }
        )
    }
}

/// The credential of a request: its bearer token, else its `faisca_token` cookie.
pub fn credential(headers: &hyper::HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some((scheme, token)) = value.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return Some(token.trim().to_string());
    }
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_string())
        })
}

/// The token of a submitted login form (`token=…`, form-encoded).
pub fn form_token(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "token").then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The login page; `failed` adds the reason the last attempt was refused.
pub fn login_page(failed: bool) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Faísca: sign in</title>
<link rel="stylesheet" href="/static/faisca.css"></head>
<body><main><h1>Faísca</h1>
<p>This driver requires a token: a user token of faisca.authenticate.tokensFile, or the cluster secret.</p>
{}<form method="post" action="/login">
<label>Token <input type="password" name="token" autocomplete="current-password" autofocus></label>
<button type="submit">Sign in</button></form></main></body></html>
"#,
        if failed {
            "<p class=\"error\">That token is not accepted here.</p>\n"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_header_or_the_cookie() {
        let mut headers = hyper::HeaderMap::new();
        assert_eq!(credential(&headers), None);
        headers.insert("cookie", "a=b; faisca_token=t-1".parse().unwrap());
        assert_eq!(credential(&headers).as_deref(), Some("t-1"));
        headers.insert("authorization", "Bearer t-2".parse().unwrap());
        assert_eq!(credential(&headers).as_deref(), Some("t-2"));
        assert_eq!(form_token(b"token=a%2Bb%3D&x=1").as_deref(), Some("a+b="));
        assert_eq!(form_token(b"token=%zz").as_deref(), Some("%zz"));
        assert_eq!(form_token(b"token=%4"), Some("%4".to_string()));
        assert_eq!(form_token(b"other=1"), None);
    }

    #[test]
    fn a_metrics_token_guards_metrics_alone_without_authentication() {
        let access = Access {
            auth: None,
            metrics_token: Some(SecretDigest::of("scrape")),
            https: true,
        };
        assert_eq!(access.verdict("/metrics", Some("scrape")), Verdict::Allowed);
        assert!(matches!(
            access.verdict("/metrics", Some("other")),
            Verdict::Refused(_)
        ));
        assert!(matches!(
            access.verdict("/metrics", None),
            Verdict::Refused(_)
        ));
        assert_eq!(access.verdict("/jobs/", None), Verdict::Allowed);
        assert!(access.cookie("t").ends_with("; Secure"));
        assert!(Access::default().is_open());
    }
}
