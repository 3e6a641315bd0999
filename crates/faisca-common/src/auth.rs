//! Authentication: who is calling, from the credential a call carries.
//!
//! Authentication is on exactly when a cluster secret is configured
//! (`faisca.authenticate.secret`, `faisca.authenticate.secret.file` or `FAISCA_AUTH_SECRET`; see
//! [`AuthSettings`]). The driver and executors then require a credential on every call
//! (`authorization: Bearer …`): the cluster secret makes the caller [`Principal::Cluster`] (an
//! executor, or an operator who sees everything); a token of `faisca.authenticate.tokensFile`
//! makes it [`Principal::User`]. [`Authenticator`] compares SHA-256 digests in constant time,
//! keeps no credential in clear beyond what the settings hold, and re-reads the tokens file when
//! it changes. Clients pick what they send with [`AuthSettings::client_credential`].

use std::collections::HashMap;
use std::sync::Arc;

use ring::digest::{SHA256, digest};
use subtle::ConstantTimeEq;

use crate::config::AuthSettings;
use crate::reload::{Build, Reloading, SourceFile};
use crate::{Error, Result};

/// Who a call comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A holder of the cluster secret: an executor, the driver, or an operator; sees everything.
    Cluster,
    /// A user of the tokens file.
    User(String),
}

impl Principal {
    /// The user's name, or `None` for the cluster.
    pub fn user(&self) -> Option<&str> {
        match self {
            Principal::Cluster => None,
            Principal::User(user) => Some(user),
        }
    }

    /// Whether this principal may see and act on what `owner` (a user, or `None`: no one in
    /// particular) owns: the cluster sees everything; a user sees their own.
    pub fn may_access(&self, owner: Option<&str>) -> bool {
        match self {
            Principal::Cluster => true,
            Principal::User(user) => owner == Some(user.as_str()),
        }
    }

    /// [`Principal::may_access`] as a user error naming `what` (`job 1234`) when it may not.
    pub fn check_access(&self, owner: Option<&str>, what: &str) -> Result<()> {
        match self {
            Principal::User(user) if !self.may_access(owner) => Err(Error::user(format!(
                "{what} is another user's: user '{user}' sees and acts on only its own"
            ))),
            _ => Ok(()),
        }
    }
}

/// Why a call was refused. The message says what is missing, never what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// The call carried no credential.
    Missing,
    /// The credential is neither the cluster secret nor a known token.
    Unknown,
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthFailure::Missing => {
                "this server requires authentication and the call carried no credential: set FAISCA_TOKEN to your user token (or, for executors and operators, FAISCA_AUTH_SECRET or faisca.authenticate.secret.file to the cluster secret)"
            }
            AuthFailure::Unknown => {
                "the credential the call carried is not accepted here: it is neither the cluster secret nor a user token of this server"
            }
        })
    }
}

/// A secret kept as its SHA-256 digest, compared in constant time: the cluster secret, a
/// metrics token.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretDigest([u8; 32]);

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(*********(redacted))")
    }
}

impl SecretDigest {
    /// The digest of `secret`.
    pub fn of(secret: &str) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, secret.as_bytes()).as_ref());
        SecretDigest(out)
    }

    /// Whether `presented` is the secret (compared in constant time).
    pub fn matches(&self, presented: &str) -> bool {
        self.matches_digest(&SecretDigest::of(presented))
    }

    fn matches_digest(&self, presented: &SecretDigest) -> bool {
        bool::from(self.0.ct_eq(&presented.0))
    }
}

/// Users by the digest of their token.
type Tokens = HashMap<SecretDigest, String>;

/// How many users the text of a tokens file (`path`, for messages) names, or the error of its
/// first bad line: what the driver checks when it (re)reads `faisca.authenticate.tokensFile`.
pub fn check_tokens_file(path: &std::path::Path, bytes: &[u8]) -> Result<usize> {
    let file = SourceFile {
        path: path.to_path_buf(),
        key: "faisca.authenticate.tokensFile",
    };
    parse_tokens(bytes, &file).map(|tokens| tokens.len())
}

fn parse_tokens(bytes: &[u8], file: &SourceFile) -> Result<Tokens> {
    let text = std::str::from_utf8(bytes).map_err(|_| {
        Error::user(format!(
            "{} ({}) is not UTF-8 text: expected lines of 'token,user'",
            file.path.display(),
            file.key
        ))
    })?;
    let mut tokens = Tokens::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(',').map(str::trim);
        let (Some(token), Some(user)) = (fields.next(), fields.next()) else {
            return Err(Error::user(format!(
                "{} ({}) line {}: expected 'token,user' (further comma-separated fields are ignored)",
                file.path.display(),
                file.key,
                number + 1
            )));
        };
        if token.is_empty() || user.is_empty() {
            return Err(Error::user(format!(
                "{} ({}) line {}: the token and the user must not be empty",
                file.path.display(),
                file.key,
                number + 1
            )));
        }
        if tokens
            .insert(SecretDigest::of(token), user.to_string())
            .is_some()
        {
            return Err(Error::user(format!(
                "{} ({}) line {}: this token is already on an earlier line",
                file.path.display(),
                file.key,
                number + 1
            )));
        }
    }
    Ok(tokens)
}

/// Decides who a credential belongs to.
pub struct Authenticator {
    secret: SecretDigest,
    tokens: Option<Reloading<Tokens>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// The authenticator of `settings`; `None` when no cluster secret is configured
    /// (authentication is off). Errors name the tokens file that cannot be used.
    pub fn new(settings: &AuthSettings) -> Result<Option<Arc<Authenticator>>> {
        let Some(secret) = &settings.secret else {
            return Ok(None);
        };
        let tokens = match &settings.tokens_file {
            Some(path) => {
                let file = SourceFile {
                    path: path.clone(),
                    key: "faisca.authenticate.tokensFile",
                };
                let source = file.clone();
                let build: Build<Tokens> = Box::new(move |bytes| parse_tokens(&bytes[0], &source));
                Some(Reloading::new(
                    "user tokens",
                    vec![file],
                    settings.reload_interval,
                    build,
                )?)
            }
            None => None,
        };
        Ok(Some(Arc::new(Authenticator {
            secret: SecretDigest::of(secret),
            tokens,
        })))
    }

    /// Who `credential` (the bearer token a call carried) belongs to.
    pub fn authenticate(
        &self,
        credential: Option<&str>,
    ) -> std::result::Result<Principal, AuthFailure> {
        let Some(credential) = credential.filter(|c| !c.is_empty()) else {
            return Err(AuthFailure::Missing);
        };
        let presented = SecretDigest::of(credential);
        if self.secret.matches_digest(&presented) {
            return Ok(Principal::Cluster);
        }
        match &self.tokens {
            Some(tokens) => tokens
                .current()
                .get(&presented)
                .map(|user| Principal::User(user.clone()))
                .ok_or(AuthFailure::Unknown),
            None => Err(AuthFailure::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secret: Option<&str>, tokens: Option<&std::path::Path>) -> AuthSettings {
        AuthSettings {
            secret: secret.map(str::to_string),
            tokens_file: tokens.map(|p| p.to_path_buf()),
            token: None,
            reload_interval: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn the_secret_and_tokens_name_their_principal() {
        let dir = std::env::temp_dir().join(format!("faisca-auth-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens");
        std::fs::write(&file, "# token,user\nt-alice,alice\n\nt-bob, bob ,extra\n").unwrap();
        let auth = Authenticator::new(&settings(Some("s3cret"), Some(&file)))
            .unwrap()
            .unwrap();
        assert_eq!(auth.authenticate(Some("s3cret")), Ok(Principal::Cluster));
        assert_eq!(
            auth.authenticate(Some("t-alice")),
            Ok(Principal::User("alice".into()))
        );
        assert_eq!(
            auth.authenticate(Some("t-bob")),
            Ok(Principal::User("bob".into()))
        );
        assert_eq!(auth.authenticate(None), Err(AuthFailure::Missing));
        assert_eq!(auth.authenticate(Some("")), Err(AuthFailure::Missing));
        assert_eq!(auth.authenticate(Some("s3cre")), Err(AuthFailure::Unknown));
        // A changed file is read again (the interval is 0 here).
        std::fs::write(&file, "t-carol,carol\n").unwrap();
        assert_eq!(
            auth.authenticate(Some("t-alice")),
            Err(AuthFailure::Unknown)
        );
        assert_eq!(
            auth.authenticate(Some("t-carol")),
            Ok(Principal::User("carol".into()))
        );
        // No secret: authentication is off.
        assert!(
            Authenticator::new(&settings(None, Some(&file)))
                .unwrap()
                .is_none()
        );
        // A bad line is named, without its token.
        std::fs::write(&file, "t-dave\n").unwrap();
        let error = Authenticator::new(&settings(Some("s"), Some(&file)))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 1") && !error.contains("t-dave"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn users_see_only_their_own() {
        assert!(Principal::Cluster.may_access(Some("alice")));
        assert!(Principal::Cluster.may_access(None));
        let alice = Principal::User("alice".into());
        assert!(alice.may_access(Some("alice")));
        assert!(!alice.may_access(Some("bob")));
        assert!(!alice.may_access(None));
        let message = AuthFailure::Unknown.to_string();
        assert!(!message.contains("expected"), "{message}");
    }
}
