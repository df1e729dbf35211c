//! Who is calling and what they may touch. The admin token may do
//! everything; an app-scoped token (from `app-portal-access`) may reach only
//! its own application's routes, read event types, open and listen to relay
//! channels, and log itself out — and inside its application only what its
//! `readOnly` flag and `capabilities` allow (`herald_core::access`).
//! The rule is decided here, once, from the method and the path, before any
//! handler runs, so no route can forget it: a route this module does not
//! name is an admin route (listing every application, creating one,
//! operational webhooks, ...) and answers 403 to an app token, and a change
//! this module does not name needs a token without restrictions.

use axum::http::Method;
use chrono::{DateTime, Utc};
use herald_core::access::{Action, TokenPermissions};
use herald_core::{AppId, TokenId};

use crate::AppState;
use crate::error::ApiError;
use crate::middleware::digest;

/// The authenticated caller, in every `/api/v1` request's extensions.
#[derive(Debug, Clone)]
pub enum Caller {
    Admin,
    App {
        app_id: AppId,
        token: TokenId,
        permissions: TokenPermissions,
        expires_at: Option<DateTime<Utc>>,
    },
}

impl Caller {
    /// Whether this caller may see data of `app_id`.
    pub fn may_see(&self, app_id: &AppId) -> bool {
        match self {
            Self::Admin => true,
            Self::App { app_id: own, .. } => own == app_id,
        }
    }

    /// Whether this caller may do `action` (inside an application it may see).
    pub fn allows(&self, action: Action) -> bool {
        match self {
            Self::Admin => true,
            Self::App { permissions, .. } => permissions.allows(action),
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
            permissions: t.permissions,
            expires_at: t.expires_at,
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
        action: Action,
    },
    /// Allowed to every authenticated caller whose permissions allow `action`.
    Open(Action),
    Denied,
}

fn reach<'a>(method: &Method, path: &'a str) -> Reach<'a> {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["app", segment] => Reach::App {
            segment,
            whole_app: true,
            action: Action::View,
        },
        ["app", segment, rest @ ..] => Reach::App {
            segment,
            whole_app: false,
            action: action_in_app(method, rest),
        },
        // Logging out ends only the caller's own token, so a read-only one may.
        ["auth", "logout"] => Reach::Open(Action::View),
        ["auth", "me"] if method == Method::GET => Reach::Open(Action::View),
        ["event-type"] | ["event-type", _] if method == Method::GET => Reach::Open(Action::View),
        // The handler checks that the task is of the caller's application.
        ["background-task", _] if method == Method::GET => Reach::Open(Action::View),
        // SPEC §1: a relay channel may be opened, and listened to, with an
        // app-scoped token (channel ids are signed, so not guessable); it
        // is not a portal action, so a restricted token may not.
        ["relay"] if method == Method::POST => Reach::Open(Action::Unrestricted),
        ["relay", _, "listen"] if method == Method::GET => Reach::Open(Action::Unrestricted),
        _ => Reach::Denied,
    }
}

/// What a request below `/app/{app}/` does, by method and the path after the
/// application. Reading is `View` except a secret; a change this does not
/// name (sending messages, expunging content) is `Unrestricted`.
fn action_in_app(method: &Method, rest: &[&str]) -> Action {
    let (get, post) = (method == Method::GET, method == Method::POST);
    match rest {
        ["endpoint", _, "secret"] if get => Action::ViewSecret,
        _ if get => Action::View,
        ["endpoint"] if post => Action::ManageEndpoint,
        // A PATCH may change only the payload template or the
        // transformation, which
        // `ManageTransformations` allows; the handler refuses anything more
        // to a token without `ManageEndpoint` (`allows_endpoint_patch`).
        ["endpoint", _] if method == Method::PATCH => Action::ManageTransformation,
        ["endpoint", _] | ["endpoint", _, "headers"] => Action::ManageEndpoint,
        ["endpoint", _, "secret", "rotate"] if post => Action::RotateSecret,
        ["endpoint", _, "recover" | "replay-missing" | "send-example"] if post => Action::CreateAttempts,
        ["msg", _, "endpoint", _, "resend"] if post => Action::CreateAttempts,
        _ => Action::Unrestricted,
    }
}

fn forbidden() -> ApiError {
    ApiError::forbidden("this token is scoped to one application and may not use this route")
}

fn not_permitted(action: Action) -> ApiError {
    let what = match action {
        Action::View => "read this",
        Action::ViewSecret => "read endpoint secrets",
        Action::RotateSecret => "rotate endpoint secrets",
        Action::ManageEndpoint => "change endpoints",
        Action::ManageTransformation => "change endpoint payload templates and transformations",
        Action::CreateAttempts => "send, resend or recover messages",
        Action::Unrestricted => "use this route",
    };
    ApiError::forbidden(format!(
        "this token may not {what} (it was made read-only or with capabilities that do not include it)"
    ))
}

/// Refuses an app-scoped caller what its scope does not include: another
/// application's routes and admin routes are 403, and so is changing or
/// deleting its own application (only reading it is in scope), and anything
/// its permissions do not allow.
pub(crate) async fn authorize(state: &AppState, caller: &Caller, method: &Method, path: &str) -> Result<(), ApiError> {
    let Caller::App { app_id, .. } = caller else {
        return Ok(());
    };
    let check = |action: Action| {
        if caller.allows(action) {
            Ok(())
        } else {
            Err(not_permitted(action))
        }
    };
    match reach(method, path) {
        Reach::Open(action) => check(action),
        Reach::Denied => Err(forbidden()),
        Reach::App {
            segment,
            whole_app,
            action,
        } => {
            if whole_app && method != Method::GET {
                return Err(forbidden());
            }
            // Another application's route is refused before permissions
            // are looked at, so the answer says nothing about it.
            if segment != app_id.as_str() {
                // The segment may be the application's uid.
                let own = state.store.get_app(app_id.as_str()).await?;
                if own.uid.as_ref().is_none_or(|u| u.as_str() != segment) {
                    return Err(forbidden());
                }
            }
            check(action)
        }
    }
}

/// For the endpoint PATCH handler: a caller without `ManageEndpoint` got
/// past the guard on `ManageTransformations`, so it may change only the
/// payload template and the transformation.
pub(crate) fn allows_endpoint_patch(caller: &Caller, only_transformations: bool) -> Result<(), ApiError> {
    if caller.allows(Action::ManageEndpoint) || only_transformations {
        Ok(())
    } else {
        Err(not_permitted(Action::ManageEndpoint))
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
                whole_app: false,
                action: Action::View,
            }
        ));
        assert!(matches!(
            reach(&get, "/api/v1/app/acme"),
            Reach::App {
                segment: "acme",
                whole_app: true,
                ..
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
        assert!(matches!(reach(&get, "/event-type/a.b"), Reach::Open(Action::View)));
        assert!(matches!(reach(&post, "/auth/logout/"), Reach::Open(Action::View)));
        assert!(matches!(reach(&get, "/auth/me/"), Reach::Open(Action::View)));
        assert!(matches!(reach(&post, "/relay/"), Reach::Open(Action::Unrestricted)));
        assert!(matches!(reach(&get, "/relay/"), Reach::Denied));
    }

    #[test]
    fn each_route_in_an_app_names_what_it_does() {
        let cases = [
            (Method::GET, "endpoint/ep_1/secret", Action::ViewSecret),
            (Method::GET, "endpoint/ep_1/stats", Action::View),
            (Method::GET, "msg", Action::View),
            (Method::POST, "endpoint", Action::ManageEndpoint),
            (Method::PUT, "endpoint/ep_1", Action::ManageEndpoint),
            (Method::DELETE, "endpoint/ep_1", Action::ManageEndpoint),
            (Method::PATCH, "endpoint/ep_1", Action::ManageTransformation),
            (Method::PUT, "endpoint/ep_1/headers", Action::ManageEndpoint),
            (Method::PATCH, "endpoint/ep_1/headers", Action::ManageEndpoint),
            (Method::POST, "endpoint/ep_1/secret/rotate", Action::RotateSecret),
            (Method::POST, "endpoint/ep_1/recover", Action::CreateAttempts),
            (Method::POST, "endpoint/ep_1/replay-missing", Action::CreateAttempts),
            (Method::POST, "endpoint/ep_1/send-example", Action::CreateAttempts),
            (Method::POST, "msg/msg_1/endpoint/ep_1/resend", Action::CreateAttempts),
            (Method::POST, "msg", Action::Unrestricted),
            (Method::DELETE, "msg/msg_1/content", Action::Unrestricted),
            (
                Method::DELETE,
                "msg/msg_1/attempt/atmpt_1/content",
                Action::Unrestricted,
            ),
            (Method::POST, "something/new", Action::Unrestricted),
        ];
        for (method, rest, want) in cases {
            let parts: Vec<&str> = rest.split('/').collect();
            assert_eq!(action_in_app(&method, &parts), want, "{method} {rest}");
        }
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
