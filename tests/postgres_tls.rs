//! PostgreSQL over TLS (issue 20): the hotline's store connects with `sslmode=verify-full`
//! and the server's CA, migrates and writes over TLS, and refuses a server whose
//! certificate another CA signed. `scripts/test.sh` gives the test server its certificate
//! (`scripts/postgres-tls.sh`); the CA's path is `HOTLINE_TEST_PG_CA`.

mod support;

use hotline::store::Store;
use support::api::{drop_schema, fresh_database, Db};

fn server_ca() -> String {
    let ca = std::env::var("HOTLINE_TEST_PG_CA")
        .unwrap_or_else(|_| "/var/lib/postgresql/hotline-tls/ca.pem".to_string());
    assert!(
        std::path::Path::new(&ca).is_file(),
        "no CA at {ca}: run `bash scripts/postgres-tls.sh` (scripts/test.sh does)"
    );
    ca
}

/// `url` (the test server at 127.0.0.1, a schema of its own) with TLS verified against
/// `ca`; the server's certificate names 127.0.0.1 (an IP address SAN) and localhost.
fn verified(url: &str, ca: &str) -> String {
    format!("{url}&sslmode=verify-full&sslrootcert={ca}")
}

#[tokio::test]
async fn the_store_works_over_verified_tls_and_refuses_a_stranger_certificate() {
    let ca = server_ca();
    let (url, schema) = fresh_database(Db::Postgres).await;
    let (url, schema) = (url.unwrap(), schema.unwrap());
    let store = Store::connect(&verified(&url, &ca))
        .await
        .expect("TLS connection");
    store.migrate().await.expect("migrations over TLS");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(encrypted, "the connection is encrypted");
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(&schema)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(tables > 10, "{tables} tables migrated");
    store.close().await;

    // A CA that did not sign the server's certificate: no connection.
    let lab = tempfile::tempdir().unwrap();
    let other = hotline::tls::self_signed(lab.path(), &["localhost".into()], 30).unwrap();
    let refused = Store::connect(&verified(&url, &other.ca.display().to_string())).await;
    assert!(refused.is_err(), "a certificate from another CA is refused");
    drop_schema(&schema).await;
}
