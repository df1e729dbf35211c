//! Endpoint credentials (`basicAuth`, `verifyToken`): sealed at rest with
//! the key that seals endpoint secrets, whole on every read, kept through
//! updates that do not touch them.

use herald_core::credentials::{BasicAuth, Credential, JsonPointer, VerifyToken};
use herald_core::model::EndpointSettings;
use herald_store::{EncryptionKey, Order};

use crate::{app, changed, each_backend, endpoint, new_endpoint_with, page};

fn with_credentials(s: &mut EndpointSettings, password: &str, token: &str) {
    s.basic_auth = Some(BasicAuth {
        username: "chaster-user".into(),
        password: Credential::new(password),
    });
    s.verify_token = Some(VerifyToken {
        pointer: JsonPointer::parse("/infoWebhook/verifyToken").unwrap(),
        token: Credential::new(token),
    });
}

/// A sensitive custom header (sealed) beside an ordinary one (plain).
const BEARER: &str = "Bearer hdr-5e0b7c2a19f4d6";

fn with_headers(s: &mut EndpointSettings) {
    s.headers.insert("authorization".into(), BEARER.into());
    s.headers.insert("x-team".into(), "billing-4d2c".into());
}

#[tokio::test]
async fn credentials_are_sealed_on_disk_and_whole_when_read() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "creds").await;
        let (password, token) = ("pw-8c1f0e77d2a94f", "vt-3b9d5a61c4e2f0");
        let id = endpoint(
            s,
            &a,
            new_endpoint_with("https://x.example/", |s| {
                with_credentials(s, password, token);
                with_headers(s);
            }),
        )
        .await;

        let read = s.get_endpoint(&a, id.as_str()).await.unwrap();
        let basic = read.settings.basic_auth.as_ref().unwrap();
        assert_eq!(basic.username, "chaster-user");
        assert_eq!(basic.password.expose(), password);
        let vt = read.settings.verify_token.as_ref().unwrap();
        assert_eq!(vt.pointer.as_str(), "/infoWebhook/verifyToken");
        assert_eq!(vt.token.expose(), token);
        let listed = s.list_endpoints(&a, page(10, Order::Descending)).await.unwrap();
        assert_eq!(listed.data[0].settings, read.settings, "a list reads them whole too");
        let targets = s.delivery_targets(vec![id.clone()]).await.unwrap();
        assert_eq!(targets[0].basic_auth.as_ref().unwrap().password.expose(), password);
        assert_eq!(targets[0].verify_token.as_ref().unwrap().token.expose(), token);

        assert!(
            !b.files_contain(password.as_bytes()).await,
            "the password is on disk in plain text"
        );
        assert!(
            !b.files_contain(token.as_bytes()).await,
            "the token is on disk in plain text"
        );
        assert!(
            !b.files_contain(BEARER.as_bytes()).await,
            "the authorization header is on disk in plain text"
        );
        assert!(
            b.files_contain(b"billing-4d2c").await,
            "an ordinary header is a plain setting"
        );
        assert_eq!(read.settings.headers["authorization"], BEARER, "read back whole");
        assert_eq!(targets[0].headers["authorization"], BEARER, "and sent");
        assert!(
            b.files_contain(b"chaster-user").await,
            "the username is a plain setting (and the check sees the files)"
        );

        // An update that leaves them alone (a PATCH of another field) keeps them.
        let kept = s
            .update_endpoint(changed(read.clone(), |s| s.description = "changed".into()))
            .await
            .unwrap();
        let again = s.get_endpoint(&a, id.as_str()).await.unwrap();
        assert_eq!(again.settings, kept.settings);
        assert_eq!(again.settings.basic_auth, read.settings.basic_auth);
        assert_eq!(again.settings.verify_token, read.settings.verify_token);

        // A new token replaces the old; removing basicAuth removes its password.
        let new_token = "vt-new-71e0c9d3aa52";
        s.update_endpoint(changed(again, |s| {
            s.basic_auth = None;
            s.verify_token.as_mut().unwrap().token = Credential::new(new_token);
        }))
        .await
        .unwrap();
        let after = s.get_endpoint(&a, id.as_str()).await.unwrap();
        assert_eq!(after.settings.basic_auth, None);
        assert_eq!(after.settings.verify_token.as_ref().unwrap().token.expose(), new_token);
        assert!(
            !b.files_contain(new_token.as_bytes()).await,
            "the new token is on disk in plain text"
        );

        // And with none left, the endpoint reads back with none.
        s.update_endpoint(changed(after, |s| s.verify_token = None))
            .await
            .unwrap();
        let bare = s.get_endpoint(&a, id.as_str()).await.unwrap();
        assert_eq!((bare.settings.basic_auth, bare.settings.verify_token), (None, None));
    })
    .await;
}

#[tokio::test]
async fn credentials_need_the_key_they_were_sealed_with() {
    each_backend(|b| async move {
        let s = &b.store;
        let a = app(s, "creds-key").await;
        let id = endpoint(
            s,
            &a,
            new_endpoint_with("https://x.example/", |s| with_credentials(s, "pw", "tok")),
        )
        .await;
        let other = b.reopen_with_key(EncryptionKey::generate()).await;
        assert!(
            other.get_endpoint(&a, id.as_str()).await.is_err(),
            "another key does not open them, and the endpoint is not read without them"
        );
        let same = b.reopen().await;
        let read = same.get_endpoint(&a, id.as_str()).await.unwrap();
        assert_eq!(read.settings.basic_auth.unwrap().password.expose(), "pw");
    })
    .await;
}
