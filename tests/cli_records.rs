//! The binary's records commands — `migrate`, `token create|list|revoke`, `retention` — on
//! the shipped sample configuration, against SQLite and the PostgreSQL server.

mod support;

use std::process::{Command, Output};
use support::api::{drop_schema, fresh_database, Db};

const BIN: &str = env!("CARGO_BIN_EXE_hotline");
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sip-config/hotline.toml");

fn hotline(args: &[&str], data: &std::path::Path, url: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args(["--config", SAMPLE])
        .arg("--data-dir")
        .arg(data);
    if let Some(u) = url {
        cmd.args(["--database-url", u]);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

async fn records_commands(db: Db) {
    let data = tempfile::tempdir().unwrap();
    let (url, schema) = fresh_database(db).await;
    let url = url.as_deref();
    let out = hotline(&["migrate"], data.path(), url);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("is up to date"), "{out:?}");
    if db == Db::Sqlite {
        assert!(data.path().join("hotline.db").is_file());
    }

    let out = hotline(
        &[
            "token",
            "create",
            "--name",
            "Администратор",
            "--role",
            "admin",
        ],
        data.path(),
        url,
    );
    assert!(out.status.success(), "{out:?}");
    let token = stdout(&out).trim().to_string();
    assert!(token.starts_with("hl_") && token.len() == 67, "{token}");
    let out = hotline(
        &[
            "token",
            "create",
            "--name",
            "x",
            "--role",
            "operator",
            "--operator",
            "9999",
        ],
        data.path(),
        url,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--operator"),
        "{out:?}"
    );
    let out = hotline(
        &["token", "create", "--name", "x", "--role", "root"],
        data.path(),
        url,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = hotline(
        &[
            "token",
            "create",
            "--name",
            "Иванова",
            "--role",
            "operator",
            "--operator",
            "1001",
        ],
        data.path(),
        url,
    );
    assert!(out.status.success(), "{out:?}");

    let list = stdout(&hotline(&["token", "list"], data.path(), url));
    assert!(list.contains("admin\tАдминистратор\t\tactive"), "{list}");
    assert!(list.contains("operator\tИванова\t1001\tactive"), "{list}");
    assert!(!list.contains(&token), "the secret is never listed");
    let out = hotline(&["token", "revoke", "1"], data.path(), url);
    assert!(out.status.success(), "{out:?}");
    let list = stdout(&hotline(&["token", "list"], data.path(), url));
    assert!(list.contains("admin\tАдминистратор\t\trevoked"), "{list}");

    let out = hotline(&["retention"], data.path(), url);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("would purge 0 journal entries"),
        "{out:?}"
    );
    if let Some(s) = schema {
        drop_schema(&s).await;
    }
}
on_both_databases!(records_commands);
