//! Who is calling and what they may touch. The admin token may do
//! everything; an app-scoped token (from `app-portal-access`) may reach only
//! its own application's routes, read event types, open and listen to relay
//! channels, and log itself out.
//! The rule is decided here, once, from the path, before any handler runs,
//! so no route can forget it: a route this module does not name is an
//! admin route (listing every application, creating one, operational
//! webhooks, ...) and answers 403 to an app token.

use axum::http::Method;
use chrono::Utc;
use herald_core::{AppId, TokenId};

use crate::AppState;
use crate::error::ApiError;
use crate::middleware::digest;

/// The authenticated caller, in every `/api/v1` request's extensions.
#[derive(Debug, Clone)]
pub enum Caller {
    Admin,
    App { app_id: AppId, token: TokenId },
}

impl Caller {
    /// Whether this caller may see data of `app_id`.
    pub fn may_see(&self, app_id: &AppId) -> bool {
        match self {
            Self::Admin => true,
            Self::App { app_id: own, .. } => own == app_id,
        }
    }
}

/// Prefix of app-scoped tokens, so they are recognisable in logs and
/// secret scanners; what follows is 32 random bytes.
pub const APP_TOKEN_PREFIX: &str = "appsk_";

/// A fresh app-scoped token and the digest the store keeps of it.
pub fn new_app_token() -> (String, [u8; 32]) {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    let token = format!(
        "{APP_TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let d = digest(token.as_bytes());
    (token, d)
}

/// Resolves a presented bearer token. Comparing digests keeps the admin
/// comparison's timing independent of where the tokens differ; app tokens
/// are looked up by digest, so the store never sees a token.
pub(crate) async fn caller(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let d = digest(token.as_bytes());
    if d == state.admin_digest {
        return Ok(Caller::Admin);
    }
    if !token.starts_with(APP_TOKEN_PREFIX) {
        return Err(ApiError::unauthorized("invalid token"));
    }
    match state.store.token_by_digest(d).await? {
        Some(t) if t.expires_at.is_none_or(|at| at > Utc::now()) => Ok(Caller::App {
            app_id: t.app_id,
            token: t.id,
        }),
        Some(_) => Err(ApiError::unauthorized("the token has expired")),
        None => Err(ApiError::unauthorized("invalid token")),
    }
}

/// What an app-scoped token may reach: `path` is below `/api/v1`.
enum Reach<'a> {
    /// A route under `/app/{segment}`; `whole_app` when it is the
    /// application itself rather than something inside it.
    App {
        segment: &'a str,
        whole_app: bool,
    },
    /// Allowed to every authenticated caller.
    Open,
    Denied,
}

fn reach<'a>(method: &Method, path: &'a str) -> Reach<'a> {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["app", segment] => Reach::App {
            segment,
            whole_app: true,
        },
        ["app", segment, _, ..] => Reach::App {
            segment,
            whole_app: false,
        },
        ["auth", "logout"] => Reach::Open,
        ["event-type"] | ["event-type", _] if method == Method::GET => Reach::Open,
        // The handler checks that the task is of the caller's application.
        ["background-task", _] if method == Method::GET => Reach::Open,
        // SPEC §1: a relay channel may be opened, and listened to, with an
        // app-scoped token (channel ids are signed, so not guessable).
        ["relay"] if method == Method::POST => Reach::Open,
        ["relay", _, "listen"] if method == Method::GET => Reach::Open,
        _ => Reach::Denied,
    }
}

fn forbidden() -> ApiError {
    ApiError::forbidden("this token is scoped to one application and may not use this route")
}

/// Refuses an app-scoped caller what its scope does not include: another
/// application's routes and admin routes are 403, and so is changing or
/// deleting its own application (only reading it is in scope).
pub(crate) async fn authorize(state: &AppState, caller: &Caller, method: &Method, path: &str) -> Result<(), ApiError> {
    let Caller::App { app_id, .. } = caller else {
        return Ok(());
    };
    match reach(method, path) {
        Reach::Open => Ok(()),
        Reach::Denied => Err(forbidden()),
        Reach::App { segment, whole_app } => {
            if whole_app && method != Method::GET {
                return Err(forbidden());
            }
            if segment == app_id.as_str() {
                return Ok(());
            }
            // The segment may be the application's uid.
            let own = state.store.get_app(app_id.as_str()).await?;
            if own.uid.as_ref().is_some_and(|u| u.as_str() == segment) {
                Ok(())
            } else {
                Err(forbidden())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_tokens_reach_only_their_app_event_types_and_logout() {
        let get = Method::GET;
        let post = Method::POST;
        assert!(matches!(
            reach(&get, "/app/app_1/endpoint/"),
            Reach::App {
                segment: "app_1",
                whole_app: false
            }
        ));
        assert!(matches!(
            reach(&get, "/api/v1/app/acme"),
            Reach::App {
                segment: "acme",
                whole_app: true
            }
        ));
        for denied in [
            "/app/",
            "/app",
            "/operational-webhook/endpoint/",
            "/auth/app-portal-access/x/",
            "/",
        ] {
            assert!(matches!(reach(&get, denied), Reach::Denied), "{denied}");
        }
        assert!(matches!(reach(&post, "/event-type/"), Reach::Denied));
        assert!(matches!(reach(&get, "/event-type/a.b"), Reach::Open));
        assert!(matches!(reach(&post, "/auth/logout/"), Reach::Open));
        assert!(matches!(reach(&post, "/relay/"), Reach::Open));
        assert!(matches!(reach(&get, "/relay/"), Reach::Denied));
    }

    #[test]
    fn app_tokens_are_random_and_hashed() {
        let (a, da) = new_app_token();
        let (b, db) = new_app_token();
        assert!(a.starts_with(APP_TOKEN_PREFIX) && a.len() == APP_TOKEN_PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_ne!(da, db);
        assert_eq!(da, digest(a.as_bytes()));
    }
}
