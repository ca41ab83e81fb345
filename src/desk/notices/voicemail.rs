//! The texts of the voicemail notices (SPEC §2.6, §3.2): what the head of the call centre
//! reads in the e-mail, and the JSON a webhook gets. The e-mail carries the callback form
//! of Table 6.1 as the voicemail made it, so that the message can be forwarded as it is.

use super::Targets;
use crate::records::notice::Notice;
use crate::records::voicemail::{SuggestedKind, Suggestion, VoicemailFacts};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;

/// §6.1: a new message, with the link to its recording.
pub fn voicemail_new(f: &VoicemailFacts, targets: &Targets, tz: Tz) -> Notice {
    let subject = format!(
        "Новое голосовое сообщение от {} ({})",
        f.phone,
        local(f.arrived_at, tz, "%d.%m.%Y %H:%M")
    );
    notice("voicemail_new", subject, f, targets, tz)
}

/// The transcript is ready (with the classifier's suggestion).
pub fn voicemail_transcript(f: &VoicemailFacts, targets: &Targets, tz: Tz) -> Notice {
    let subject = format!(
        "Расшифровка голосового сообщения от {} ({})",
        f.phone,
        local(f.arrived_at, tz, "%d.%m.%Y %H:%M")
    );
    notice("voicemail_transcript", subject, f, targets, tz)
}

/// The message is past its next-working-day deadline and nobody has processed it.
pub fn voicemail_overdue(f: &VoicemailFacts, targets: &Targets, tz: Tz) -> Notice {
    let subject = format!(
        "Просрочено: голосовое сообщение от {} не обработано до {}",
        f.phone,
        local(f.deadline_at, tz, "%d.%m.%Y %H:%M")
    );
    notice("voicemail_overdue", subject, f, targets, tz)
}

fn notice(
    event: &'static str,
    subject: String,
    f: &VoicemailFacts,
    targets: &Targets,
    tz: Tz,
) -> Notice {
    let audio = targets.voicemail_audio_url(f.id);
    let question = match (&f.transcript, f.empty) {
        (Some(t), _) if !t.is_empty() => t.clone(),
        (_, true) => "(сообщение слишком короткое: текста нет)".to_string(),
        _ => "(расшифровка ожидается)".to_string(),
    };
    let hint = f.suggestion.as_ref().map(suggestion_line);
    let mut text = String::new();
    text.push_str(&format!(
        "Голосовое сообщение {} ({}), журнал {}.\n",
        f.id,
        if f.after_hours {
            "оставлено в нерабочее время"
        } else {
            "все операторы были заняты"
        },
        f.journal_no
    ));
    text.push_str(&format!("Запись: {audio}\n"));
    text.push_str(&format!("Длительность: {:.0} с\n", f.duration_s));
    text.push_str(&format!(
        "Обработать не позднее: {}\n",
        local(f.deadline_at, tz, "%d.%m.%Y %H:%M")
    ));
    if let Some(h) = &hint {
        text.push_str(&format!("Подсказка классификатора: {h}\n"));
    }
    text.push_str("\nФорма для обратной связи с заявителем (табл. 6.1)\n");
    let form = [
        ("1. Дата звонка", local(f.arrived_at, tz, "%d.%m.%Y")),
        ("2. Время звонка", local(f.arrived_at, tz, "%H:%M")),
        ("3. ФИО заявителя", "—".to_string()),
        ("4. Номер телефона заявителя", f.phone.clone()),
        ("5. Статус заявителя: ФЛ/ЮЛ", "—".to_string()),
        ("6. Суть вопроса", question.clone()),
        (
            "7. Удобное время для заявителя принять звонок специалиста банка",
            format!("не позднее {}", local(f.deadline_at, tz, "%d.%m.%Y %H:%M")),
        ),
        (
            "8. Оператор, принявший звонок",
            "голосовая почта".to_string(),
        ),
        ("9. Комментарии оператора", hint.clone().unwrap_or_default()),
        (
            "10. Дата и время осуществления сотрудником Банка звонка заявителю",
            String::new(),
        ),
    ];
    for (field, value) in form {
        text.push_str(&format!("{field}: {value}\n"));
    }
    let payload = json!({
        "voicemail_id": f.id,
        "journal_id": f.journal_id,
        "journal_no": f.journal_no,
        "callback_id": f.callback_id,
        "phone": f.phone,
        "arrived_at": f.arrived_at,
        "duration_s": f.duration_s,
        "after_hours": f.after_hours,
        "empty": f.empty,
        "deadline_at": f.deadline_at,
        "audio_url": audio,
        "transcript": f.transcript,
        "suggestion": f.suggestion,
    });
    Notice {
        event,
        entity: "voicemail",
        entity_id: f.id,
        subject,
        text,
        payload,
    }
}

/// "неисправность банкомата: выдал неправильную сумму денег (слова: банкомат, сумму)".
fn suggestion_line(s: &Suggestion) -> String {
    let kind = match s.kind {
        SuggestedKind::AtmFault => "неисправность банкомата",
        SuggestedKind::AtmSecurity => "событие безопасности банкомата",
        SuggestedKind::Other => "не про банкомат",
    };
    let mut line = kind.to_string();
    if let Some(c) = s.category {
        line.push_str(": ");
        line.push_str(c.name_ru());
    }
    if !s.matched.is_empty() {
        line.push_str(&format!(" (слова: {})", s.matched.join(", ")));
    }
    line
}

fn local(at: DateTime<Utc>, tz: Tz, fmt: &str) -> String {
    at.with_timezone(&tz).format(fmt).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn facts() -> VoicemailFacts {
        VoicemailFacts {
            id: 17,
            journal_id: 40,
            journal_no: "№ 12/2026".into(),
            phone: "+79161234567".into(),
            arrived_at: Utc.with_ymd_and_hms(2026, 3, 10, 16, 5, 0).unwrap(),
            duration_s: 12.4,
            after_hours: true,
            empty: false,
            deadline_at: Utc.with_ymd_and_hms(2026, 3, 11, 15, 0, 0).unwrap(),
            callback_id: Some(5),
            transcript: None,
            suggestion: None,
        }
    }

    fn targets() -> Targets {
        Targets {
            public_url: "https://hotline.bank".into(),
            head_email: Some("head@bank".into()),
            ..Targets::default()
        }
    }

    #[test]
    fn new_voicemail_mail_has_the_link_the_form_and_local_times() {
        let n = voicemail_new(&facts(), &targets(), chrono_tz::Europe::Moscow);
        assert_eq!(n.event, "voicemail_new");
        assert_eq!((n.entity, n.entity_id), ("voicemail", 17));
        assert_eq!(
            n.subject,
            "Новое голосовое сообщение от +79161234567 (10.03.2026 19:05)"
        );
        assert!(n
            .text
            .contains("Запись: https://hotline.bank/api/v1/voicemail/17/audio"));
        assert!(n.text.contains("1. Дата звонка: 10.03.2026"));
        assert!(n.text.contains("2. Время звонка: 19:05"));
        assert!(n.text.contains("6. Суть вопроса: (расшифровка ожидается)"));
        assert!(n.text.contains("не позднее 11.03.2026 18:00"));
        assert!(n
            .text
            .contains("8. Оператор, принявший звонок: голосовая почта"));
        assert_eq!(
            n.payload["audio_url"],
            "https://hotline.bank/api/v1/voicemail/17/audio"
        );
        assert_eq!(n.payload["callback_id"], 5);
    }

    #[test]
    fn transcript_mail_carries_the_text_and_the_suggestion() {
        let mut f = facts();
        f.transcript = Some("Банкомат выдал неправильную сумму".into());
        f.suggestion = Some(crate::transcribe::classify::classify(
            "Банкомат выдал неправильную сумму",
        ));
        let n = voicemail_transcript(&f, &targets(), chrono_tz::Europe::Moscow);
        assert_eq!(n.event, "voicemail_transcript");
        assert!(n
            .text
            .contains("6. Суть вопроса: Банкомат выдал неправильную сумму"));
        assert!(n
            .text
            .contains("Подсказка классификатора: неисправность банкомата"));
        assert_eq!(n.payload["transcript"], "Банкомат выдал неправильную сумму");
        assert_eq!(n.payload["suggestion"]["kind"], "atm_fault");
    }

    #[test]
    fn overdue_and_empty_messages_say_so() {
        let mut f = facts();
        f.empty = true;
        let n = voicemail_overdue(&f, &targets(), chrono_tz::Europe::Moscow);
        assert!(n.subject.starts_with("Просрочено"));
        assert!(n.text.contains("слишком короткое"));
    }
}
