//! The texts of ATM ticket notices (SPEC §3.3): the ticket to the departments with the
//! Table 6.1 form, the security service's finding, the restoration to the operator, and
//! the supervisors' alerts. Each is one [`Notice`]; [`Targets`] says where it goes.

use super::Targets;
use crate::records::atm::TicketKind;
use crate::records::notice::{Notice, Sink};
use crate::records::tickets::{departments, AlertKind, Department, Ticket};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;

/// A notice with the sinks it goes to.
pub type Addressed = (Notice, Vec<Sink>);

/// "ticket_routed": to the department(s) of its kind, with the form (§6.7.4–6.7.5).
pub fn routed(t: &Ticket, targets: &Targets, tz: Tz) -> Addressed {
    let deps = departments(t.kind);
    let names: Vec<String> = deps.iter().map(|d| targets.department_name(*d)).collect();
    let subject = match t.kind {
        TicketKind::AtmFault => format!(
            "Заявка {}: неисправность банкомата {} — {}",
            t.number,
            t.atm_id,
            t.category.name_ru()
        ),
        TicketKind::AtmSecurity => format!(
            "Заявка {}: событие безопасности, банкомат {} приостановлен — {}",
            t.number,
            t.atm_id,
            t.category.name_ru()
        ),
    };
    let mut text = header(t, targets, tz);
    text.push_str(&format!("Направлена: {}\n", names.join(", ")));
    for d in deps {
        if let Some(phone) = targets.departments.get(d).and_then(|d| d.phone.as_deref()) {
            text.push_str(&format!(
                "Телефон ({}): {phone}\n",
                targets.department_name(*d)
            ));
        }
    }
    if t.kind == TicketKind::AtmSecurity {
        text.push_str("Банкомат приостановлен до восстановления (п. 6.7.5).\n");
    }
    text.push_str(&form(t, tz));
    let notice = notice("ticket_routed", subject, text, t, targets);
    let sinks = targets.department_sinks(deps);
    (notice, sinks)
}

/// "ticket_confirmed" / "ticket_not_confirmed": the inspection's finding, to the security
/// service (§6.7.5.1–6.7.5.2: ОИБ is informed either way).
pub fn finding(t: &Ticket, confirmed: bool, targets: &Targets, tz: Tz) -> Addressed {
    let (event, what) = if confirmed {
        (
            "ticket_confirmed",
            "нарушение подтверждено, требуется обращение в полицию",
        )
    } else {
        ("ticket_not_confirmed", "нарушение не подтверждено")
    };
    let subject = format!("Заявка {}: банкомат {} — {what}", t.number, t.atm_id);
    let mut text = header(t, targets, tz);
    text.push_str(&format!("Результат осмотра: {what}.\n"));
    text.push_str(&form(t, tz));
    let notice = notice(event, subject, text, t, targets);
    (notice, targets.department_sinks(&[Department::Security]))
}

/// "ticket_restored": the ATM works again; to the operator who registered the ticket.
pub fn restored(t: &Ticket, targets: &Targets, tz: Tz) -> Addressed {
    let subject = format!("Банкомат {} снова работает (заявка {})", t.atm_id, t.number);
    let mut text = header(t, targets, tz);
    text.push_str(&format!(
        "Банкомат восстановлен {}.\nПри необходимости сообщите заявителю ({}).\n",
        t.restored_at.map(|r| local(r, tz)).unwrap_or_default(),
        t.phone.as_deref().unwrap_or("номер не указан")
    ));
    let notice = notice("ticket_restored", subject, text, t, targets);
    (notice, targets.operator_sinks(t.operator.as_deref()))
}

/// An alert to the supervisors about `t` (the ticket that crossed the threshold, or the
/// overdue one); `count` tickets on its ATM within `hours`.
pub fn alert(
    kind: AlertKind,
    t: &Ticket,
    count: u32,
    hours: u32,
    targets: &Targets,
    tz: Tz,
) -> Addressed {
    let (subject, line) = match kind {
        AlertKind::SecurityRepeat => (
            format!(
                "Тревога: {count} событий безопасности на банкомате {} за {hours} ч",
                t.atm_id
            ),
            format!("На банкомате {count} событий безопасности за последние {hours} ч."),
        ),
        AlertKind::FaultRepeat => (
            format!(
                "Тревога: {count} неисправностей банкомата {} за {hours} ч",
                t.atm_id
            ),
            format!("По банкомату {count} заявок о неисправности за последние {hours} ч."),
        ),
        AlertKind::Overdue => (
            format!(
                "Просрочена заявка {}: банкомат {} не восстановлен к {}",
                t.number,
                t.atm_id,
                local(t.deadline_at, tz)
            ),
            format!(
                "Срок заявки истёк {}, состояние: {}.",
                local(t.deadline_at, tz),
                t.state.russian()
            ),
        ),
    };
    let mut text = header(t, targets, tz);
    text.push_str(&line);
    text.push('\n');
    let mut n = notice(
        match kind {
            AlertKind::SecurityRepeat => "alert_security_repeat",
            AlertKind::FaultRepeat => "alert_fault_repeat",
            AlertKind::Overdue => "alert_ticket_overdue",
        },
        subject,
        text,
        t,
        targets,
    );
    n.payload["alert"] = json!({ "kind": kind.as_str(), "count": count, "hours": hours });
    (n, targets.supervisor_sinks())
}

fn header(t: &Ticket, targets: &Targets, tz: Tz) -> String {
    let kind = match t.kind {
        TicketKind::AtmFault => "Неисправность банкомата",
        TicketKind::AtmSecurity => "Событие безопасности банкомата",
    };
    format!(
        "{kind}: {}.\nЗаявка {} от {}, состояние: {}.\nБанкомат: {}, {}\nСрок: {}\nЗаявка: {}\n",
        t.category.name_ru(),
        t.number,
        local(t.created_at, tz),
        t.state.russian(),
        t.atm_id,
        t.atm_address,
        local(t.deadline_at, tz),
        ticket_url(targets, t.id),
    )
}

/// Table 6.1, as the departments expect the form.
fn form(t: &Ticket, tz: Tz) -> String {
    let at = t.created_at.with_timezone(&tz);
    let question = format!(
        "{}: {}. Банкомат {}, {}.{}",
        t.kind.name_ru(),
        t.category.name_ru(),
        t.atm_id,
        t.atm_address,
        if t.description.is_empty() {
            String::new()
        } else {
            format!(" {}", t.description)
        }
    );
    let rows = [
        ("1. Дата звонка", at.format("%d.%m.%Y").to_string()),
        ("2. Время звонка", at.format("%H:%M").to_string()),
        (
            "3. ФИО заявителя",
            t.caller_name.clone().unwrap_or_else(|| "—".into()),
        ),
        (
            "4. Номер телефона заявителя",
            t.phone.clone().unwrap_or_else(|| "—".into()),
        ),
        ("5. Статус заявителя: ФЛ/ЮЛ", "—".into()),
        ("6. Суть вопроса", question),
        (
            "7. Удобное время для заявителя принять звонок специалиста банка",
            "—".into(),
        ),
        (
            "8. Оператор, принявший звонок",
            t.operator.clone().unwrap_or_else(|| t.created_by.clone()),
        ),
        (
            "9. Комментарии оператора",
            t.script_hint.clone().unwrap_or_default(),
        ),
        (
            "10. Дата и время осуществления сотрудником Банка звонка заявителю",
            String::new(),
        ),
    ];
    let mut text = String::from("\nФорма для обратной связи с заявителем (табл. 6.1)\n");
    for (field, value) in rows {
        text.push_str(&format!("{field}: {value}\n"));
    }
    text
}

fn notice(
    event: &'static str,
    subject: String,
    text: String,
    t: &Ticket,
    targets: &Targets,
) -> Notice {
    Notice {
        event,
        entity: "atm_ticket",
        entity_id: t.id,
        subject,
        text,
        payload: json!({
            "ticket": t,
            "url": ticket_url(targets, t.id),
        }),
    }
}

fn ticket_url(targets: &Targets, id: i64) -> String {
    format!("{}/api/v1/atm/tickets/{id}", targets.public_url)
}

fn local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%d.%m.%Y %H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desk::notices::DepartmentTarget;
    use crate::records::atm::AtmCategory;
    use crate::records::tickets::TicketState;
    use chrono::TimeZone;

    fn ticket(kind: TicketKind, category: AtmCategory) -> Ticket {
        let at = Utc.with_ymd_and_hms(2026, 3, 10, 9, 30, 0).unwrap();
        Ticket {
            id: 7,
            number: "АТМ-2026-000007".into(),
            kind,
            category,
            category_name: category.name_ru().into(),
            atm_id: "ATM-0042".into(),
            atm_address: "г. Симферополь, ул. Ленина, 1".into(),
            phone: Some("+79781234567".into()),
            caller_name: Some("Петров П. П.".into()),
            journal_id: Some(3),
            description: "Сумма меньше на 1000 рублей".into(),
            state: TicketState::Routed,
            operator: Some("1001".into()),
            created_by: "Иванова".into(),
            created_at: at,
            deadline_at: at + chrono::Duration::days(3),
            overdue: false,
            restored_at: None,
            closed_at: None,
            updated_at: at,
            script_hint: crate::records::tickets::script_hint(category).map(Into::into),
            next: vec![],
        }
    }

    fn targets() -> Targets {
        let mut t = Targets {
            public_url: "https://hotline.bank".into(),
            head_email: Some("head@bank".into()),
            ..Targets::default()
        };
        for (d, name, email, phone) in [
            (Department::Card, "ДКБ", "cards@bank", "+7 495 000-00-01"),
            (Department::Security, "ОИБ", "oib@bank", "+7 495 000-00-02"),
        ] {
            t.departments.insert(
                d,
                DepartmentTarget {
                    name: name.into(),
                    email: Some(email.into()),
                    phone: Some(phone.into()),
                    webhook: None,
                },
            );
        }
        t.supervisors = vec!["head@bank".into()];
        t
    }

    #[test]
    fn a_fault_goes_to_the_card_department_with_the_form() {
        let t = ticket(TicketKind::AtmFault, AtmCategory::FaultWrongAmount);
        let (n, sinks) = routed(&t, &targets(), chrono_tz::Europe::Moscow);
        assert_eq!(sinks, vec![Sink::Email("cards@bank".into())]);
        assert_eq!(n.event, "ticket_routed");
        assert!(n.subject.contains("АТМ-2026-000007"), "{}", n.subject);
        assert!(n.text.contains("Телефон (ДКБ): +7 495 000-00-01"));
        assert!(n.text.contains("1. Дата звонка: 10.03.2026"));
        assert!(n.text.contains("2. Время звонка: 12:30"));
        assert!(n.text.contains("4. Номер телефона заявителя: +79781234567"));
        assert!(n
            .text
            .contains("6. Суть вопроса: Нарушение порядка штатного функционирования банкомата: выдал неправильную сумму денег. Банкомат ATM-0042"));
        assert!(n.text.contains("9. Комментарии оператора: Предложите"));
        assert_eq!(n.payload["ticket"]["category"], "fault_wrong_amount");
        assert_eq!(
            n.payload["url"],
            "https://hotline.bank/api/v1/atm/tickets/7"
        );
    }

    #[test]
    fn a_security_event_goes_to_both_departments_at_once() {
        let t = ticket(TicketKind::AtmSecurity, AtmCategory::SecuritySkimmer);
        let (n, sinks) = routed(&t, &targets(), chrono_tz::Europe::Moscow);
        assert_eq!(
            sinks,
            vec![
                Sink::Email("oib@bank".into()),
                Sink::Email("cards@bank".into())
            ]
        );
        assert!(n.subject.contains("приостановлен"));
        assert!(n.text.contains("Направлена: ОИБ, ДКБ"));
        let (f, to) = finding(&t, false, &targets(), chrono_tz::Europe::Moscow);
        assert_eq!(f.event, "ticket_not_confirmed");
        assert_eq!(to, vec![Sink::Email("oib@bank".into())]);
    }

    #[test]
    fn alerts_go_to_the_supervisors() {
        let t = ticket(TicketKind::AtmSecurity, AtmCategory::SecuritySkimmer);
        let (n, sinks) = alert(
            AlertKind::SecurityRepeat,
            &t,
            2,
            24,
            &targets(),
            chrono_tz::Europe::Moscow,
        );
        assert_eq!(sinks, vec![Sink::Email("head@bank".into())]);
        assert_eq!(n.event, "alert_security_repeat");
        assert!(n.subject.contains("2 событий безопасности"));
        assert_eq!(n.payload["alert"]["kind"], "security_repeat");
    }
}
