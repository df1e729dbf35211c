//! Start-up configuration: generated secrets, environment variables, and
//! one process per data directory.

use std::process::Command;

use crate::harness::{Server, ServerOptions, temp_dir};

#[tokio::test]
async fn admin_token_is_generated_once_printed_once_and_kept() {
    let dir = temp_dir();
    let opts = ServerOptions {
        admin_token: None,
        ..Default::default()
    };
    let mut first = Server::start_with(dir.path(), opts.clone());
    let printed: Vec<String> = first.stdout.lock().unwrap().clone();
    let line = printed
        .iter()
        .find(|l| l.starts_with("Generated admin token"))
        .expect("the generated token is printed");
    let token = line.rsplit(' ').next().unwrap().to_owned();
    assert_eq!(token, first.token, "the printed token is the one kept in the data dir");
    assert!(token.len() >= 32);
    let (status, _) = first.get("/app/").await;
    assert_eq!(status, 200);
    assert!(
        first.stderr().is_empty() || !first.stderr().contains(&token),
        "the token leaked into the log"
    );
    first.terminate(std::time::Duration::from_secs(10));

    let second = Server::start_with(dir.path(), opts);
    assert!(
        second
            .stdout
            .lock()
            .unwrap()
            .iter()
            .all(|l| !l.contains("Generated admin token")),
        "printed twice"
    );
    assert_eq!(second.token, token);
    let (status, _) = second.get("/app/").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn settings_come_from_the_environment_and_flags_win() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            admin_token: None,
            env: vec![("HERALD_ADMIN_TOKEN".into(), "from-env-token".into())],
            ..Default::default()
        },
    );
    let http = crate::harness::client();
    let resp = http
        .get(server.api("/app/"))
        .bearer_auth("from-env-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        !dir.path().join("admin-token").exists(),
        "a token was generated although one was given"
    );

    // --listen (a flag) wins over HERALD_LISTEN; the server still came up on the flag's random port.
    let dir2 = temp_dir();
    let flagged = Server::start_with(
        dir2.path(),
        ServerOptions {
            env: vec![("HERALD_LISTEN".into(), "256.0.0.1:1".into())],
            ..Default::default()
        },
    );
    let (status, _) = flagged.get("/health/").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_is_refused() {
    let dir = temp_dir();
    let _first = Server::start(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-token", "x", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another herald process"), "{stderr}");
}

#[tokio::test]
async fn bad_settings_fail_with_a_message_naming_them() {
    let dir = temp_dir();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-token", "x", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} {env:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["--allow-private-targets", "10.0.0.0/33"], &[]).contains("--allow-private-targets"));
    assert!(run(&["--encryption-key", "short"], &[]).contains("--encryption-key"));
    assert!(run(&[], &[("HERALD_TIME_SCALE", "0")]).contains("HERALD_TIME_SCALE"));
    assert!(run(&["--database-url", "mysql://x"], &[]).contains("--database-url"));
    assert!(run(&["--backlog-refresh-secs", "0"], &[]).contains("--backlog-refresh-secs"));
    assert!(run(&[], &[("HERALD_BACKLOG_REFRESH_SECS", "-1")]).contains("--backlog-refresh-secs"));
}

#[test]
fn migrate_applies_the_schema_and_exits() {
    let dir = temp_dir();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args(["migrate", "--data-dir"]).arg(dir.path());
    let url = std::fs::read_to_string(dir.path().join(crate::harness::DATABASE_URL_FILE)).ok();
    if let Some(url) = &url {
        cmd.args(["--database-url", url.trim()]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    if url.is_none() {
        assert!(dir.path().join("herald.db").exists());
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
}
