//! The API's contract: the committed OpenAPI description equals the routes, every route in
//! it is listed here with its action, and every role gets exactly what the matrix of
//! `api::auth::allowed` says, route by route, on both databases.

mod support;

use hotline::api::auth::{allowed, Action};
use hotline::store::tokens::Role;
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
            if allowed(role, action) {
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
