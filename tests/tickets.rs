//! ATM incident tickets through the API (issue 7, SPEC §3.3), on SQLite and PostgreSQL:
//! both full lifecycles with every refused step and role at every state, the ATM's
//! suspension and restoration, the notices an SMTP server started here receives (right
//! recipients, the Table 6.1 form), who may see what, the alerts at their thresholds, the
//! restoration reaching the operator's event feed, and the journal's reference.

mod support;

use hotline::records::atm::TicketKind;
use hotline::records::role::Role;
use hotline::records::tickets::{check_transition, next_states, TicketState};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use support::api::{start_edited, Api, Db};
use support::notify::{Mail, SmtpServer};

const CARDS: &str = "cards.head@bank.test";
const OIB: &str = "oib@bank.test";
const HEAD: &str = "head.callcentre@bank.test";
const OPERATOR_MAIL: &str = "ivanova@bank.test";

fn tables(smtp_port: u16) -> String {
    format!(
        r#"
[notify]
public_url = "https://hotline.bank.test"
head_email = "{HEAD}"
from = "hotline@bank.test"
retry_base_s = 1
retry_max_s = 2
poll_ms = 100
overdue_check_s = 1

[notify.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
timeout_s = 2

[notify.departments.card]
name = "Департамент карточного бизнеса"
email = "{CARDS}"
phone = "+7 495 000-00-01"

[notify.departments.security]
name = "ОИБ"
email = "{OIB}"
phone = "+7 495 000-00-02"

[tickets]
fault_deadline_days = 3
security_deadline_days = 1
security_repeat_count = 2
security_repeat_hours = 24
fault_repeat_count = 3
fault_repeat_hours = 72

[[tickets.atms]]
id = "ATM-1"
address = "г. Симферополь, ул. Ленина, 1"

[[tickets.atms]]
id = "ATM-2"
address = "г. Севастополь, ул. Большая Морская, 26"

[[tickets.atms]]
id = "ATM-3"
address = "г. Ялта, набережная, 5"
"#
    )
}

/// The hotline with departments, the operator's e-mail, and a second operator's token
/// (`operator2`, extension 1002).
async fn start(db: Db, smtp: &SmtpServer) -> Api {
    let mut api = start_edited(db, &tables(smtp.addr.port()), |c| {
        c.operators[0].email = Some(OPERATOR_MAIL.into());
    })
    .await;
    let (_, secret) = api
        .hotline
        .records
        .create_token("test operator 2", Role::Operator, Some("1002"))
        .await
        .unwrap();
    api.tokens.insert("operator2", secret);
    api
}

async fn post(api: &Api, role: &str, path: &str, body: Value) -> (StatusCode, Value) {
    api.call(Some(role), Method::POST, path, Some(body)).await
}

async fn register(api: &Api, role: &str, body: Value) -> Value {
    let (status, t) = post(api, role, "/atm/tickets", body).await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    t
}

/// The roles' tokens the refusal checks try, with the role and whether it is the author.
const CALLERS: [(&str, Role, bool); 6] = [
    ("operator", Role::Operator, true),
    ("operator2", Role::Operator, false),
    ("supervisor", Role::Supervisor, false),
    ("card_department", Role::CardDepartment, false),
    ("security", Role::Security, false),
    ("admin", Role::Admin, false),
];

/// At the ticket's current `state`: every step the lifecycle lacks is 409 listing the
/// steps it has; every step it has is 403 for every caller it is not for. Nothing moves.
async fn refusals(api: &Api, id: i64, kind: TicketKind, state: TicketState) {
    let path = format!("/atm/tickets/{id}/transition");
    let expected = serde_json::to_value(next_states(kind, state)).unwrap();
    for to in TicketState::ALL {
        let exists = next_states(kind, state).iter().any(|n| n.to == to);
        if !exists {
            let (status, body) = post(api, "supervisor", &path, json!({ "to": to })).await;
            assert_eq!(status, StatusCode::CONFLICT, "{state:?} → {to:?}: {body}");
            assert_eq!(body["allowed"], expected, "{state:?} → {to:?}");
            assert!(body["error"].as_str().unwrap().contains("cannot become"));
            continue;
        }
        for (token, role, author) in CALLERS {
            if check_transition(kind, state, to, role, author).is_ok() {
                continue;
            }
            let (status, body) = post(api, token, &path, json!({ "to": to })).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{token} {state:?} → {to:?}: {body}"
            );
        }
    }
    let (_, t) = api.get("supervisor", &format!("/atm/tickets/{id}")).await;
    assert_eq!(
        t["state"],
        state.as_str(),
        "a refused step moved the ticket"
    );
}

/// Takes one step as `token`, after checking every refusal at the current state.
async fn step(
    api: &Api,
    id: i64,
    kind: TicketKind,
    from: TicketState,
    to: TicketState,
    token: &str,
) -> Value {
    refusals(api, id, kind, from).await;
    let (status, t) = post(
        api,
        token,
        &format!("/atm/tickets/{id}/transition"),
        json!({ "to": to, "note": format!("{} by {token}", to.as_str()) }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{from:?} → {to:?} by {token}: {t}");
    assert_eq!(t["state"], to.as_str());
    t
}

async fn mails(smtp: &mut SmtpServer, n: usize) -> Vec<Mail> {
    let mut got = Vec::new();
    while got.len() < n {
        match smtp.next(Duration::from_secs(15)).await {
            Some(m) => got.push(m),
            None => panic!("{} of {n} e-mails arrived: {got:#?}", got.len()),
        }
    }
    got
}

fn to(m: &Mail) -> String {
    m.to.join(",")
}

async fn atm(api: &Api, id: &str) -> Value {
    let (status, a) = api.get("operator", &format!("/atms/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    a
}

// A fault (§6.7.4): registered by the operator during the call, routed to the card
// department with the form, restored by it, the operator told, closed.
async fn fault_lifecycle(db: Db) {
    use TicketState::*;
    let mut smtp = SmtpServer::start().await;
    let api = start(db, &smtp).await;
    let journal = api
        .journal_call("atm-call-1", "+79781112233", "2026-03-10T09:30:00Z")
        .await;
    let t = register(
        &api,
        "operator",
        json!({"kind": "atm_fault", "category": "fault_wrong_amount", "atm_id": "ATM-1",
               "journal_id": journal, "description": "Выдал на 1000 рублей меньше"}),
    )
    .await;
    let id = t["id"].as_i64().unwrap();
    assert_eq!(t["state"], "registered");
    assert_eq!(t["phone"], "+79781112233", "the caller is the journal's");
    assert_eq!(t["operator"], support::OPERATOR);
    assert_eq!(t["atm_address"], "г. Симферополь, ул. Ленина, 1");
    assert_eq!(t["category_name"], "выдал неправильную сумму денег");
    let number = t["number"].as_str().unwrap().to_string();
    assert!(
        number.starts_with("АТМ-20") && number.ends_with("-000001"),
        "{number}"
    );
    assert!(t["script_hint"]
        .as_str()
        .unwrap()
        .contains("письменным заявлением"));
    assert!(t["deadline_at"].as_str().unwrap() > t["created_at"].as_str().unwrap());
    // A fault does not suspend the ATM.
    assert_eq!(atm(&api, "ATM-1").await["state"], "in_service");
    // The journal shows it, in the API and the export.
    let (_, entry) = api.get("operator", &format!("/journal/{journal}")).await;
    assert_eq!(entry["tickets"], number.as_str());
    assert_eq!(
        entry["appeal_type"], "atm_incident",
        "the call is an ATM appeal now"
    );
    let (_, _, csv) = api
        .raw(
            Some("supervisor"),
            Method::GET,
            "/journal/export.csv",
            None,
            &[],
        )
        .await;
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .ends_with("Заявки по банкоматам"));
    assert!(csv.contains(&number), "{csv}");

    step(
        &api,
        id,
        TicketKind::AtmFault,
        Registered,
        Routed,
        "operator",
    )
    .await;
    let routed = mails(&mut smtp, 1).await;
    assert_eq!(
        to(&routed[0]),
        CARDS,
        "a fault goes to the card department only"
    );
    let subject = routed[0].header("Subject").unwrap();
    assert!(
        subject.contains(&number) && subject.contains("ATM-1"),
        "{subject}"
    );
    let text = routed[0].text();
    assert!(
        text.contains("Форма для обратной связи с заявителем (табл. 6.1)"),
        "{text}"
    );
    assert!(
        text.contains("4. Номер телефона заявителя: +79781112233"),
        "{text}"
    );
    assert!(text.contains("6. Суть вопроса: Нарушение порядка штатного функционирования банкомата: выдал неправильную сумму денег. Банкомат ATM-1"), "{text}");
    assert!(
        text.contains("8. Оператор, принявший звонок: 1001"),
        "{text}"
    );
    assert!(text.contains("Телефон (Департамент карточного бизнеса): +7 495 000-00-01"));

    let restored = step(
        &api,
        id,
        TicketKind::AtmFault,
        Routed,
        Restored,
        "card_department",
    )
    .await;
    assert!(restored["restored_at"].is_string());
    let told = mails(&mut smtp, 1).await;
    assert_eq!(
        to(&told[0]),
        OPERATOR_MAIL,
        "the registering operator is told"
    );
    assert!(told[0]
        .header("Subject")
        .unwrap()
        .contains("снова работает"));
    step(
        &api,
        id,
        TicketKind::AtmFault,
        Restored,
        OperatorNotified,
        "card_department",
    )
    .await;
    let closed = step(
        &api,
        id,
        TicketKind::AtmFault,
        OperatorNotified,
        Closed,
        "operator",
    )
    .await;
    assert!(closed["closed_at"].is_string());
    assert_eq!(closed["next"], json!([]));
    refusals(&api, id, TicketKind::AtmFault, Closed).await;

    // Every transition is recorded: who, with which role, the note.
    let (_, history) = api
        .get("card_department", &format!("/atm/tickets/{id}/events"))
        .await;
    let events = history["events"].as_array().unwrap();
    let path: Vec<&str> = events.iter().map(|e| e["to"].as_str().unwrap()).collect();
    assert_eq!(
        path,
        [
            "registered",
            "routed",
            "restored",
            "operator_notified",
            "closed"
        ]
    );
    assert_eq!(events[2]["role"], "card_department");
    assert_eq!(events[2]["actor"], "test card_department");
    assert_eq!(events[2]["note"], "restored by card_department");
    assert_eq!(events[1]["from"], "registered");
    assert_eq!(events[0]["role"], "operator");
    // And audited.
    let (_, audit) = api
        .get("supervisor", &format!("/audit?entity=atm_ticket&id={id}"))
        .await;
    assert!(audit.to_string().contains("operator_notified"), "{audit}");
    // Nothing else was sent (no alert for a single fault).
    assert!(smtp.drain(Duration::from_millis(500)).await.is_empty());
    api.stop().await;
}
on_both_databases!(fault_lifecycle);

// A security event (§6.7.5): the ATM suspended on registration, both departments told at
// once, inspected, confirmed, police, devices removed, restored; and a second one not
// confirmed. The operator's feed hears the restoration.
async fn security_lifecycle(db: Db) {
    use TicketState::*;
    let mut smtp = SmtpServer::start().await;
    let api = start(db, &smtp).await;
    let mut feed = api
        .client
        .get(format!("{}/atm/events", api.base))
        .bearer_auth(&api.tokens["operator"])
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);

    let t = register(
        &api,
        "operator",
        json!({"kind": "atm_security", "category": "security_skimmer", "atm_id": "ATM-2",
               "phone": "+79780000001", "description": "На картоприёмнике накладка"}),
    )
    .await;
    let id = t["id"].as_i64().unwrap();
    let a = atm(&api, "ATM-2").await;
    assert_eq!(a["state"], "suspended", "suspended on registration: {a}");
    assert_eq!(a["suspended_by"], id);

    let k = TicketKind::AtmSecurity;
    step(&api, id, k, Registered, Routed, "operator").await;
    let routed = mails(&mut smtp, 2).await;
    let mut recipients: Vec<String> = routed.iter().map(to).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        [CARDS, OIB],
        "security and the card department at once"
    );
    for m in &routed {
        assert!(m.header("Subject").unwrap().contains("приостановлен"));
        assert!(m
            .text()
            .contains("6. Суть вопроса: Нарушение обеспечения защиты информации"));
    }
    step(&api, id, k, Routed, Inspection, "security").await;
    step(&api, id, k, Inspection, Confirmed, "security").await;
    let finding = mails(&mut smtp, 1).await;
    assert_eq!(to(&finding[0]), OIB);
    assert!(finding[0]
        .header("Subject")
        .unwrap()
        .contains("подтверждено"));
    step(&api, id, k, Confirmed, PoliceContacted, "security").await;
    step(&api, id, k, PoliceContacted, DevicesRemoved, "security").await;
    assert_eq!(atm(&api, "ATM-2").await["state"], "suspended");
    step(&api, id, k, DevicesRemoved, Restored, "card_department").await;
    let a = atm(&api, "ATM-2").await;
    assert_eq!(a["state"], "in_service", "{a}");
    assert!(a["suspended_by"].is_null());
    assert_eq!(to(&mails(&mut smtp, 1).await[0]), OPERATOR_MAIL);
    step(&api, id, k, Restored, OperatorNotified, "card_department").await;
    step(&api, id, k, OperatorNotified, Closed, "supervisor").await;

    // The restoration reached the operator's feed (with the ATM back in service).
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains("\"closed\"") {
        let chunk = tokio::time::timeout_at(deadline, feed.chunk())
            .await
            .expect("ticket events in time")
            .unwrap()
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: ticket"), "{seen}");
    assert!(
        seen.contains("\"state\":\"restored\"") && seen.contains("\"atm_state\":\"in_service\""),
        "{seen}"
    );

    // Not confirmed (§6.7.5.1): ОИБ told, restored by the card department.
    let t2 = register(
        &api,
        "supervisor",
        json!({"kind": "atm_security", "category": "security_hidden_camera",
               "atm_id": "ATM-2", "phone": "+79780000002"}),
    )
    .await;
    let id2 = t2["id"].as_i64().unwrap();
    assert_eq!(atm(&api, "ATM-2").await["suspended_by"], id2);
    // Two security events on ATM-2 within 24 h: the supervisors are alerted.
    let alert = mails(&mut smtp, 1).await;
    assert_eq!(to(&alert[0]), HEAD);
    assert!(alert[0]
        .header("Subject")
        .unwrap()
        .contains("2 событий безопасности"));
    step(&api, id2, k, Registered, Routed, "supervisor").await;
    mails(&mut smtp, 2).await;
    step(&api, id2, k, Routed, Inspection, "card_department").await;
    step(&api, id2, k, Inspection, NotConfirmed, "security").await;
    let finding = mails(&mut smtp, 1).await;
    assert_eq!(to(&finding[0]), OIB);
    assert!(finding[0]
        .header("Subject")
        .unwrap()
        .contains("не подтверждено"));
    step(&api, id2, k, NotConfirmed, Restored, "card_department").await;
    assert_eq!(atm(&api, "ATM-2").await["state"], "in_service");
    api.stop().await;
}
on_both_databases!(security_lifecycle);

// Who sees what (SPEC §3.3): security tickets only to security, the card department and
// supervisors; an operator only their own fault tickets; admins nothing.
async fn visibility(db: Db) {
    let smtp = SmtpServer::start().await;
    let api = start(db, &smtp).await;
    let fault = |atm: &str| {
        json!({"kind": "atm_fault", "category": "fault_black_screen", "atm_id": atm,
               "phone": "+79780000003"})
    };
    let own = register(&api, "operator", fault("ATM-1")).await;
    let other = register(&api, "operator2", fault("ATM-3")).await;
    let security = register(
        &api,
        "operator",
        json!({"kind": "atm_security", "category": "security_keypad_overlay",
               "atm_id": "ATM-3", "phone": "+79780000004"}),
    )
    .await;
    let get = |id: &Value| format!("/atm/tickets/{id}");

    // The operator: their own fault ticket, nothing else.
    assert_eq!(
        api.get("operator", &get(&own["id"])).await.0,
        StatusCode::OK
    );
    for path in [
        get(&other["id"]),
        get(&security["id"]),
        format!("/atm/tickets/{}/events", security["id"]),
        "/atm/tickets?kind=atm_security".into(),
        "/atm/tickets?operator=1002".into(),
    ] {
        let (status, body) = api.get("operator", &path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let (_, list) = api.get("operator", "/atm/tickets").await;
    let ids: Vec<&Value> = list["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["id"])
        .collect();
    assert_eq!(
        ids,
        [&own["id"]],
        "an operator's list is their own fault tickets"
    );
    let (_, list) = api.get("operator2", "/atm/tickets?operator=1002").await;
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1);

    // Security, the card department and supervisors see everything.
    for role in ["security", "card_department", "supervisor"] {
        assert_eq!(
            api.get(role, &get(&security["id"])).await.0,
            StatusCode::OK,
            "{role}"
        );
        let (_, list) = api.get(role, "/atm/tickets").await;
        assert_eq!(list["tickets"].as_array().unwrap().len(), 3, "{role}");
        let (_, list) = api
            .get(role, "/atm/tickets?kind=atm_security&open=true")
            .await;
        assert_eq!(list["tickets"].as_array().unwrap().len(), 1, "{role}");
    }
    // Admins run the system, not the tickets.
    for path in ["/atm/tickets", "/atm/stats", "/atms", "/atm/categories"] {
        assert_eq!(
            api.get("admin", path).await.0,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    // Departments do not register tickets; operators do not manage the registry.
    let (status, _) = post(&api, "security", "/atm/tickets", fault("ATM-1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .call(
            Some("operator"),
            Method::PUT,
            "/atms/ATM-9",
            Some(json!({"address": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The registry through the API (card department), and the ATM's state.
    let (status, a) = api
        .call(
            Some("card_department"),
            Method::PUT,
            "/atms/ATM-9",
            Some(json!({"address": "г. Керчь, ул. Ленина, 9"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["state"], "in_service");
    let (_, all) = api.get("operator", "/atms").await;
    assert_eq!(all["atms"].as_array().unwrap().len(), 4);
    assert_eq!(atm(&api, "ATM-3").await["suspended_by"], security["id"]);
    assert_eq!(
        api.get("operator", "/atms/ATM-404").await.0,
        StatusCode::NOT_FOUND
    );

    // Bad input names the field.
    for (body, field) in [
        (
            json!({"kind": "atm_fault", "category": "security_skimmer", "atm_id": "ATM-1", "phone": "+79780000005"}),
            "category",
        ),
        (
            json!({"kind": "atm_fault", "category": "fault_other", "atm_id": "ATM-404", "phone": "+79780000005"}),
            "atm_id",
        ),
        (
            json!({"kind": "atm_fault", "category": "fault_other", "atm_id": "ATM-1"}),
            "phone",
        ),
        (
            json!({"kind": "atm_fault", "category": "fault_on_fire", "atm_id": "ATM-1", "phone": "+79780000005"}),
            "category",
        ),
        (
            json!({"kind": "atm_fault", "category": "fault_other", "atm_id": "ATM-1", "journal_id": 99999}),
            "journal_id",
        ),
    ] {
        let (status, e) = post(&api, "operator", "/atm/tickets", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert_eq!(e["field"], field, "{body}: {e}");
    }
    let (status, e) = post(
        &api,
        "operator",
        &format!("/atm/tickets/{}/transition", own["id"]),
        json!({"to": "fixed"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");

    // Categories with the script hints, and the complaint advice (§6.8).
    let (_, cats) = api.get("operator", "/atm/categories").await;
    let cats_list = cats["categories"].as_array().unwrap();
    assert_eq!(cats_list.len(), 20);
    let captured = cats_list
        .iter()
        .find(|c| c["code"] == "fault_card_captured_with_message")
        .unwrap();
    assert!(captured["script_hint"]
        .as_str()
        .unwrap()
        .contains("возврат"));
    assert!(cats["complaint_hint"].as_str().unwrap().contains("сайт"));

    // Stats by ATM and category.
    let (status, stats) = api.get("card_department", "/atm/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let atm3 = stats["by_atm"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["atm_id"] == "ATM-3")
        .unwrap();
    assert_eq!(
        (
            atm3["faults"].as_i64(),
            atm3["security"].as_i64(),
            atm3["open"].as_i64()
        ),
        (Some(1), Some(1), Some(2))
    );
    let black = stats["by_category"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == "fault_black_screen")
        .unwrap();
    assert_eq!(black["count"], 2);
    api.stop().await;
}
on_both_databases!(visibility);

// Alerts at the thresholds: the third fault on one ATM within 72 h, and a ticket past its
// deadline (once), as e-mails to the supervisors and events on their feed.
async fn alerts(db: Db) {
    let mut smtp = SmtpServer::start().await;
    let api = start(db, &smtp).await;
    let mut feed = api
        .client
        .get(format!("{}/atm/events", api.base))
        .bearer_auth(&api.tokens["supervisor"])
        .send()
        .await
        .unwrap();
    let fault = json!({"kind": "atm_fault", "category": "fault_out_of_cash", "atm_id": "ATM-3",
                       "phone": "+79780000006"});
    let first = register(&api, "operator", fault.clone()).await;
    register(&api, "operator", fault.clone()).await;
    assert!(
        smtp.drain(Duration::from_millis(700)).await.is_empty(),
        "two faults are below the threshold of 3"
    );
    let third = register(&api, "operator", fault.clone()).await;
    let alert = mails(&mut smtp, 1).await;
    assert_eq!(to(&alert[0]), HEAD);
    let subject = alert[0].header("Subject").unwrap();
    assert!(
        subject.contains("3 неисправностей банкомата ATM-3 за 72 ч"),
        "{subject}"
    );

    // Past the deadline: put the first ticket's deadline in the past.
    sqlx::query("UPDATE atm_tickets SET deadline_at = 1000 WHERE id = $1")
        .bind(first["id"].as_i64().unwrap())
        .execute(api.hotline.records.store.pool())
        .await
        .unwrap();
    let overdue = mails(&mut smtp, 1).await;
    assert_eq!(to(&overdue[0]), HEAD);
    let subject = overdue[0].header("Subject").unwrap();
    assert!(subject.starts_with("Просрочена заявка"), "{subject}");
    assert!(
        subject.contains(first["number"].as_str().unwrap()),
        "{subject}"
    );
    let (_, t) = api
        .get("supervisor", &format!("/atm/tickets/{}", first["id"]))
        .await;
    assert_eq!(t["overdue"], true);
    // Once: the checker runs every second, the reminder is not repeated.
    assert!(smtp.drain(Duration::from_millis(2500)).await.is_empty());

    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !(seen.contains("\"fault_repeat\"") && seen.contains("\"overdue\"")) {
        let chunk = tokio::time::timeout_at(deadline, feed.chunk())
            .await
            .unwrap_or_else(|_| panic!("alerts on the feed: {seen}"))
            .unwrap()
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: ticket_alert"), "{seen}");
    assert!(
        seen.contains(&format!("\"ticket_id\":{}", third["id"])),
        "{seen}"
    );
    api.stop().await;
}
on_both_databases!(alerts);

// Retention (§7.6): registering a ticket is activity on its call's entry; when the entry
// is purged, its tickets, their events and notices go with it, and the ATM they held is
// released of the reference.
async fn retention_takes_the_calls_tickets(db: Db) {
    let smtp = SmtpServer::start().await;
    let api = start(db, &smtp).await;
    let journal = api
        .journal_call("old-atm", "+79780000007", "2020-02-03T08:00:00Z")
        .await;
    let t = register(
        &api,
        "operator",
        json!({"kind": "atm_security", "category": "security_other", "atm_id": "ATM-1",
               "journal_id": journal}),
    )
    .await;
    let (_, dry) = api.get("admin", "/retention").await;
    assert!(
        dry["entries"].as_array().unwrap().is_empty(),
        "the ticket is a young document of the 2020 call: {dry}"
    );
    sqlx::query("UPDATE journal_entries SET last_activity_at = $1 WHERE id = $2")
        .bind(hotline::store::ms("2020-02-05T08:00:00Z".parse().unwrap()))
        .bind(journal)
        .execute(api.hotline.records.store.pool())
        .await
        .unwrap();
    let (status, done) = api
        .call(Some("admin"), Method::POST, "/retention/purge", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["entries"].as_array().unwrap().len(), 1);
    let (status, _) = api
        .get("supervisor", &format!("/atm/tickets/{}", t["id"]))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, audit) = api
        .get(
            "supervisor",
            &format!("/audit?entity=atm_ticket&id={}", t["id"]),
        )
        .await;
    assert_eq!(audit["entries"], json!([]), "{audit}");
    assert!(atm(&api, "ATM-1").await["suspended_by"].is_null());
    api.stop().await;
}
on_both_databases!(retention_takes_the_calls_tickets);
