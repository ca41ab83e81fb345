//! "alert": an alert episode has started; to the supervisors (and every webhook), once.

use super::tickets::Addressed;
use super::Targets;
use crate::records::notice::Notice;
use crate::store::alerts::AlertRow;
use chrono_tz::Tz;
use serde_json::json;

pub fn started(a: &AlertRow, targets: &Targets, tz: Tz) -> Addressed {
    let at = a.started_at.with_timezone(&tz).format("%d.%m.%Y %H:%M");
    let notice = Notice {
        event: "alert",
        entity: "alert",
        entity_id: a.id,
        subject: format!("Тревога горячей линии: {}", a.text),
        text: format!(
            "{}\nС {at}.\nОчередь и операторы: {}/supervisor\n",
            a.text, targets.public_url
        ),
        payload: json!({
            "kind": a.kind,
            "subject": a.subject,
            "text": a.text,
            "started_at": a.started_at,
        }),
    };
    (notice, targets.supervisor_sinks())
}
