//! The API's contract: the committed OpenAPI description equals the routes, every route in
//! it is listed here with its action, and every role gets exactly what the matrix of
//! `api::auth::allowed` says, route by route, on both databases.

mod support;

use hotline::api::auth::{allowed, Action};
use hotline::records::role::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::api::{start, Db, ROLES};

const COMMITTED: &str = include_str!("../schemas/openapi.json");

#[test]
fn committed_openapi_matches_the_routes() {
    let generated: Value =
        serde_json::from_str(&hotline::api::openapi().to_pretty_json().unwrap()).unwrap();
    let committed: Value = serde_json::from_str(COMMITTED).unwrap();
    assert!(
        generated == committed,
        "schemas/openapi.json is stale: run `cargo run --release -- openapi > schemas/openapi.json`"
    );
}

/// Every route of the description, with the action it performs and a body that is valid
/// enough to get past parsing.
fn routes() -> Vec<(Method, &'static str, Action, Option<Value>)> {
    use Action::*;
    vec![
        (Method::GET, "/journal", JournalRead, None),
        (Method::GET, "/journal/{id}", JournalRead, None),
        (
            Method::PATCH,
            "/journal/{id}",
            JournalEdit,
            Some(json!({"content": "x"})),
        ),
        (Method::GET, "/journal/export.csv", JournalExport, None),
        (
            Method::GET,
            "/journal/{id}/recording",
            RecordingListen,
            None,
        ),
        (Method::GET, "/callbacks", CallbackRead, None),
        (
            Method::POST,
            "/callbacks",
            CallbackCreate,
            Some(
                json!({"phone": "+79780000000", "question": "q", "convenient_at": "2030-01-01T00:00:00Z"}),
            ),
        ),
        (Method::GET, "/callbacks/{id}", CallbackRead, None),
        (
            Method::POST,
            "/callbacks/{id}/send",
            CallbackSend,
            Some(json!({"assigned_to": "x"})),
        ),
        (
            Method::POST,
            "/callbacks/{id}/complete",
            CallbackComplete,
            Some(json!({})),
        ),
        (Method::GET, "/voicemail", VoicemailRead, None),
        (Method::GET, "/voicemail/{id}", VoicemailRead, None),
        (Method::GET, "/voicemail/{id}/audio", VoicemailRead, None),
        (
            Method::POST,
            "/voicemail/{id}/process",
            VoicemailProcess,
            None,
        ),
        (Method::GET, "/stats", StatsRead, None),
        (Method::GET, "/audit?entity=journal&id=1", AuditRead, None),
        (Method::GET, "/operators", OperatorsRead, None),
        (Method::GET, "/notifications", OutboxManage, None),
        (Method::POST, "/notifications/retry", OutboxManage, None),
        (Method::POST, "/transcription/retry", OutboxManage, None),
        (Method::GET, "/tokens", TokensManage, None),
        (
            Method::POST,
            "/tokens",
            TokensManage,
            Some(json!({"name": "n", "role": "security"})),
        ),
        (Method::DELETE, "/tokens/{id}", TokensManage, None),
        (Method::GET, "/retention", RetentionRun, None),
        (Method::POST, "/retention/purge", RetentionRun, None),
        (Method::GET, "/atm/tickets", TicketRead, None),
        (
            Method::POST,
            "/atm/tickets",
            TicketCreate,
            Some(
                json!({"kind": "atm_fault", "category": "fault_other", "atm_id": "ATM-X", "phone": "+79780000000"}),
            ),
        ),
        (Method::GET, "/atm/tickets/{id}", TicketRead, None),
        (Method::GET, "/atm/tickets/{id}/events", TicketRead, None),
        (
            Method::POST,
            "/atm/tickets/{id}/transition",
            TicketTransition,
            Some(json!({"to": "routed"})),
        ),
        (Method::GET, "/atm/stats", TicketStats, None),
        (Method::GET, "/atm/events", TicketRead, None),
        (Method::GET, "/atm/categories", AtmRead, None),
        (Method::GET, "/atms", AtmRead, None),
        (Method::GET, "/atms/{id}", AtmRead, None),
        (
            Method::PUT,
            "/atms/{id}",
            AtmManage,
            Some(json!({"address": "г. Ялта, ул. Морская, 1"})),
        ),
        (Method::GET, "/live", LiveRead, None),
        (Method::GET, "/live/events", LiveRead, None),
        (
            Method::POST,
            "/operators/{extension}/sign-in",
            OperatorPresence,
            None,
        ),
        (
            Method::POST,
            "/operators/{extension}/sign-out",
            OperatorPresence,
            None,
        ),
        (
            Method::POST,
            "/operators/{extension}/pause",
            OperatorPresence,
            None,
        ),
    ]
}

#[test]
fn every_documented_route_is_in_the_matrix_test() {
    let doc: Value = serde_json::from_str(COMMITTED).unwrap();
    let mut documented: Vec<String> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    let mut tested: Vec<String> = routes()
        .iter()
        .map(|(m, p, _, _)| format!("{m} {}", p.split('?').next().unwrap()))
        .collect();
    documented.sort();
    tested.sort();
    assert_eq!(documented, tested);
}

async fn every_role_gets_what_the_matrix_says(db: Db) {
    let api = start(db).await;
    // Something for each {id} to name; the DELETE is last and names a token that does not
    // exist, so it cannot revoke the tokens the test uses.
    let jid = api
        .journal_call("m", "+79781234567", "2026-03-10T07:00:00Z")
        .await;
    let _ = jid;
    for (method, path, action, body) in routes() {
        let path = path
            .replace(
                "{id}",
                if method == Method::DELETE {
                    "99999"
                } else {
                    "1"
                },
            )
            .replace("{extension}", support::OPERATOR);
        if path.ends_with("/events") && !path.starts_with("/atm/tickets") {
            // A stream: only the status is checked.
            assert_eq!(
                api.status_only(None, method.clone(), &path).await,
                StatusCode::UNAUTHORIZED
            );
            for name in ROLES {
                let s = api.status_only(Some(name), method.clone(), &path).await;
                let want = if allowed(Role::parse(name).unwrap(), action) {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                };
                assert_eq!(s, want, "{name} GET {path}");
            }
            continue;
        }
        let (s, _) = api.call(None, method.clone(), &path, body.clone()).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        for name in ROLES {
            let role = Role::parse(name).unwrap();
            let (s, v) = api
                .call(Some(name), method.clone(), &path, body.clone())
                .await;
            // The role may listen to recordings, but the security service only to the calls
            // of its own tickets, and call 1 has none: refused by the record, not the role.
            let by_record = role == Role::Security
                && action == Action::RecordingListen
                && s == StatusCode::FORBIDDEN
                && v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("without a ticket of theirs"));
            if allowed(role, action) && !by_record {
                assert!(
                    s != StatusCode::FORBIDDEN && s != StatusCode::UNAUTHORIZED && s.as_u16() < 500,
                    "{name} {method} {path}: {s} {v}"
                );
            } else {
                assert_eq!(s, StatusCode::FORBIDDEN, "{name} {method} {path}: {v}");
                assert!(v["error"].as_str().unwrap().contains(name), "{v}");
            }
        }
    }
    // A wrong token, a malformed header, an unknown route.
    let resp = api
        .client
        .get(format!("{}/journal", api.base))
        .bearer_auth("hl_not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let resp = api
        .client
        .get(format!("{}/journal", api.base))
        .header("authorization", "Basic b3A6b3A=")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (s, v) = api.get("supervisor", "/nowhere").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(v["error"].is_string());
    api.stop().await;
}
on_both_databases!(every_role_gets_what_the_matrix_says);

/// A request that declares a JSON body of `len` bytes and sends none of it; the answer.
async fn declared_body(
    api: &support::api::Api,
    method: &str,
    path: &str,
    len: usize,
) -> (StatusCode, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = api.hotline.http_addr;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} /api/v1{path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        api.tokens["operator"]
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("an answer without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    // The body may be chunked: take the JSON object inside.
    let json = &body[body.find('{').unwrap_or(0)..=body.rfind('}').unwrap_or(0)];
    (
        StatusCode::from_u16(status).unwrap(),
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

/// Hostile input on every route: malformed tokens; SQL metacharacters, path traversal and
/// numbers past i64 in every id; the same in every filter; a 10 MB body; text that is not
/// UTF-8. Each gets its 4xx (JSON, naming the problem), never a 500, and the database is
/// intact afterwards. Counts are printed for `benches/RESULTS.md`.
async fn hostile_input_gets_4xx_never_500(db: Db) {
    let api = start(db).await;
    api.journal_call("abuse", "+79781234567", "2026-03-10T07:00:00Z")
        .await;
    let sent = std::cell::Cell::new(0);
    let check = |what: String, s: StatusCode, v: &Value| {
        sent.set(sent.get() + 1);
        assert!(s.is_client_error(), "{what}: {s} {v} (expected a 4xx)");
        assert!(v["error"].is_string() || v.is_string(), "{what}: {v}");
    };
    let malformed_tokens = [
        "Bearer",
        "Bearer ",
        "Bearer  hl_x",
        "bearer",
        "Bearer hl_x extra",
        "Bearer ' OR '1'='1",
        "Bearer ../../etc/passwd",
        "Basic b3A6b3A=",
    ];
    let ids = [
        "0",
        "-1",
        "99999999999999999999",
        "1'%20OR%20'1'%3D'1",
        "1;DROP%20TABLE%20journal_entries",
        "..%2F..%2Fetc%2Fpasswd",
        "%00",
        "abc",
    ];
    for (method, path, _action, body) in routes() {
        if path.ends_with("/events") && !path.starts_with("/atm/tickets") {
            continue; // streams: covered by the matrix test
        }
        let plain = path
            .replace("{id}", "1")
            .replace("{extension}", support::OPERATOR);
        for t in malformed_tokens {
            let (s, _, bytes) = api
                .raw(
                    None,
                    method.clone(),
                    &plain,
                    body.clone(),
                    &[("authorization", t)],
                )
                .await;
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            check(format!("{method} {plain} with {t:?}"), s, &v);
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {plain} with {t:?}");
        }
        if path.contains("{id}") || path.contains("{extension}") {
            // ATM ids are free text (`PUT /atms/abc` registers an ATM "abc"): for them the
            // rule is only "never a 500".
            let free_text = path.starts_with("/atms/");
            for id in ids {
                let p = path.replace("{id}", id).replace("{extension}", id);
                for role in ["admin", "supervisor", "security"] {
                    let (s, v) = api.call(Some(role), method.clone(), &p, body.clone()).await;
                    if free_text {
                        sent.set(sent.get() + 1);
                        assert!(s.as_u16() < 500, "{role} {method} {p}: {s} {v}");
                    } else {
                        check(format!("{role} {method} {p}"), s, &v);
                    }
                }
            }
        }
    }
    // Filters: a 4xx naming the filter, or a page of what matches (SQL text in a filter is
    // a value like any other, so it matches nothing); never a 500.
    let filter = |what: String, s: StatusCode, v: &Value| {
        sent.set(sent.get() + 1);
        assert!(s.as_u16() < 500, "{what}: {s} {v}");
        if s.is_success() {
            assert_eq!(
                v["entries"].as_array().map(Vec::len).unwrap_or(0),
                0,
                "{what}: {v}"
            );
        } else {
            assert!(v["error"].is_string(), "{what}: {v}");
        }
    };
    for q in [
        "/journal?phone=%27%20OR%201%3D1--",
        "/journal?q=%25%27%3B%20DROP%20TABLE%20journal_entries%3B--",
        "/journal?q=%FF%FE",
        "/journal?from=..%2F..%2F&to=x",
        "/journal?disposition=%27",
        "/journal?limit=0",
        "/journal?limit=-1",
        "/journal?limit=99999999999999999999",
        "/journal?cursor=%27%20OR%201%3D1",
        "/journal?unknown=1",
        "/callbacks?limit=501",
        "/voicemail?status=%00",
        "/stats?from=2026-13-45",
        "/audit?entity=journal&id=1%27",
        "/atm/tickets?atm_id=%27%3B--&limit=0",
    ] {
        let (s, v) = api.get("supervisor", q).await;
        filter(format!("GET {q}"), s, &v);
    }
    let (s, v) = api.get("supervisor", "/journal?q=%FF%FE").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["field"], "q", "{v}");
    // A 10 MB body is refused as too large, saying the limit, on its declared length: the
    // client sends the headers only and reads the answer (a client still writing when the
    // server answers and closes may see a reset instead, a race of TCP, not of the API).
    let (s, v) = declared_body(&api, "PATCH", "/journal/1", 10 * 1024 * 1024).await;
    check("PATCH /journal/1 declaring 10 MB".into(), s, &v);
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("1024 KiB"), "{v}");
    // Invalid UTF-8 in a JSON body.
    let resp = api
        .client
        .patch(format!("{}/journal/1", api.base))
        .bearer_auth(&api.tokens["operator"])
        .header("content-type", "application/json")
        .body(b"{\"content\": \"\xff\xfe\"}".to_vec())
        .send()
        .await
        .unwrap();
    let s = resp.status();
    let v: Value = resp.json().await.unwrap();
    check("PATCH /journal/1 with invalid UTF-8".into(), s, &v);
    // NUL in a JSON string and in a query (PostgreSQL would refuse them with a 500).
    let (s, v) = api
        .call(
            Some("operator"),
            Method::PATCH,
            "/journal/1",
            Some(json!({ "content": "a\u{0}b" })),
        )
        .await;
    check("PATCH /journal/1 with a NUL".into(), s, &v);
    assert_eq!(v["field"], "content", "{v}");
    let (s, v) = api.get("supervisor", "/journal?q=%00").await;
    check("GET /journal?q=%00".into(), s, &v);
    // Nothing was dropped.
    let (s, page) = api.get("supervisor", "/journal").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["entries"].as_array().unwrap().len(), 1, "{page}");
    eprintln!("api abuse: {} hostile requests, none a 500", sent.get());
    api.stop().await;
}
on_both_databases!(hostile_input_gets_4xx_never_500);
