//! SQL of ATM tickets and the ATM registry. Every write is one transaction: the ticket or
//! its transition, its lifecycle event, the audit line, the ATM's state, the journal's
//! reference and the notices it causes (outbox rows) commit together or not at all.

use super::{audit, from_ms, ms, opt_from_ms, Store, StoreError};
use crate::notify::outbox::Notifying;
use crate::notify::tickets::{self as notices, Addressed};
use crate::records::atm::{AtmCategory, TicketKind};
use crate::records::tickets::{
    check_transition, AlertKind, next_states, script_hint, AtmConfig, NewTicket, Ticket, TicketError,
    TicketEvent, TicketState, TicketsConfig,
};
use crate::records::role::Role;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

/// An ATM of the registry and its state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Atm {
    pub id: String,
    pub address: String,
    /// `in_service` or `suspended`.
    pub state: String,
    /// The security ticket that suspended it.
    pub suspended_by: Option<i64>,
    pub updated_at: DateTime<Utc>,
}

fn atm_from_row(r: &AnyRow) -> Result<Atm, StoreError> {
    Ok(Atm {
        id: r.try_get(0)?,
        address: r.try_get(1)?,
        state: r.try_get(2)?,
        suspended_by: r.try_get(3)?,
        updated_at: from_ms(r.try_get(4)?),
    })
}

const ATM_SELECT: &str = "SELECT id, address, state, suspended_by, updated_at FROM atms";

/// Adds the configured ATMs and updates their addresses; their state is left alone.
pub async fn sync_registry(store: &Store, atms: &[AtmConfig]) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    for a in atms {
        upsert_atm(&mut tx, a, "config", Utc::now()).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn upsert_atm(
    conn: &mut AnyConnection,
    a: &AtmConfig,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO atms (id, address, state, updated_by, updated_at) \
         VALUES ($1, $2, 'in_service', $3, $4) \
         ON CONFLICT (id) DO UPDATE SET address = excluded.address, \
         updated_by = excluded.updated_by, updated_at = excluded.updated_at \
         WHERE atms.address <> excluded.address",
    )
    .bind(a.id.as_str())
    .bind(a.address.as_str())
    .bind(actor)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Adds an ATM to the registry or changes its address (audited).
pub async fn put_atm(store: &Store, a: &AtmConfig, actor: &str) -> Result<Atm, StoreError> {
    let now = Utc::now();
    let mut tx = store.begin_write().await?;
    let old: Option<String> = sqlx::query_scalar("SELECT address FROM atms WHERE id = $1")
        .bind(a.id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    upsert_atm(&mut tx, a, actor, now).await?;
    let summary = format!("{}: {}", a.id, a.address);
    audit::record(
        &mut tx,
        now,
        actor,
        "atm",
        0,
        if old.is_some() { "update" } else { "create" },
        Some("address"),
        old.as_deref(),
        Some(&summary),
    )
    .await?;
    tx.commit().await?;
    get_atm(store, &a.id)
        .await?
        .ok_or_else(|| StoreError::Conflict(format!("ATM {} vanished", a.id)))
}

pub async fn get_atm(store: &Store, id: &str) -> Result<Option<Atm>, StoreError> {
    let row = sqlx::query(&format!("{ATM_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(atm_from_row).transpose()
}

pub async fn list_atms(store: &Store) -> Result<Vec<Atm>, StoreError> {
    let rows = sqlx::query(&format!("{ATM_SELECT} ORDER BY id"))
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(atm_from_row).collect()
}

const SELECT: &str = "SELECT id, year, seq, kind, category, atm_id, atm_address, phone, \
     caller_name, journal_id, description, state, operator, created_by, created_at, \
     deadline_at, restored_at, closed_at, updated_at FROM atm_tickets";

fn from_row(r: &AnyRow, now: DateTime<Utc>) -> Result<Ticket, StoreError> {
    let bad = |what: &str, v: &str| StoreError::Conflict(format!("stored {what} `{v}` is unknown"));
    let kind_s: String = r.try_get(3)?;
    let kind = TicketKind::parse(&kind_s).ok_or_else(|| bad("ticket kind", &kind_s))?;
    let cat_s: String = r.try_get(4)?;
    let category = AtmCategory::parse(&cat_s).ok_or_else(|| bad("category", &cat_s))?;
    let state_s: String = r.try_get(11)?;
    let state = TicketState::parse(&state_s).ok_or_else(|| bad("state", &state_s))?;
    let year: i64 = r.try_get(1)?;
    let seq: i64 = r.try_get(2)?;
    let deadline_at = from_ms(r.try_get(15)?);
    Ok(Ticket {
        id: r.try_get(0)?,
        number: number(year, seq),
        kind,
        category,
        category_name: category.name_ru().to_string(),
        atm_id: r.try_get(5)?,
        atm_address: r.try_get(6)?,
        phone: r.try_get(7)?,
        caller_name: r.try_get(8)?,
        journal_id: r.try_get(9)?,
        description: r.try_get(10)?,
        state,
        operator: r.try_get(12)?,
        created_by: r.try_get(13)?,
        created_at: from_ms(r.try_get(14)?),
        deadline_at,
        overdue: !state.is_resolved() && now > deadline_at,
        restored_at: opt_from_ms(r.try_get(16)?),
        closed_at: opt_from_ms(r.try_get(17)?),
        updated_at: from_ms(r.try_get(18)?),
        script_hint: script_hint(category).map(str::to_string),
        next: next_states(kind, state),
    })
}

/// The registration number: `АТМ-2026-000042`.
pub fn number(year: i64, seq: i64) -> String {
    format!("АТМ-{year}-{seq:06}")
}

async fn load(conn: &mut AnyConnection, id: i64) -> Result<Ticket, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound {
            entity: "ticket",
            id,
        })?;
    from_row(&row, Utc::now())
}

pub async fn get(store: &Store, id: i64) -> Result<Ticket, StoreError> {
    let mut conn = store.pool().acquire().await?;
    load(&mut conn, id).await
}

/// An alert that a write raised (also enqueued for the supervisors).
#[derive(Debug, Clone)]
pub struct Alert {
    pub kind: AlertKind,
    pub ticket_id: i64,
    pub atm_id: String,
    pub count: u32,
    pub hours: u32,
}

/// What registering a ticket did.
#[derive(Debug, Clone)]
pub struct Registered {
    pub ticket: Ticket,
    /// The ATM was put out of service by it (security events).
    pub suspended: bool,
    pub alerts: Vec<Alert>,
}

/// Registers a ticket: number, caller from the journal entry, the ATM's suspension for a
/// security event, the journal's reference, the repeat alerts.
#[allow(clippy::too_many_arguments)]
pub async fn create(
    store: &Store,
    new: &NewTicket,
    operator: Option<&str>,
    role: Role,
    actor: &str,
    year: i64,
    now: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
    rules: &TicketsConfig,
    notifying: &Notifying<'_>,
) -> Result<Registered, TicketError> {
    let mut tx = store.begin_write().await?;
    let atm: Option<(String, String)> =
        sqlx::query_as("SELECT address, state FROM atms WHERE id = $1")
            .bind(new.atm_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    let Some((address, atm_state)) = atm else {
        return Err(crate::records::RecordError::invalid(
            "atm_id",
            format!("{} is not in the ATM registry", new.atm_id),
        )
        .into());
    };
    let (mut phone, mut name) = (new.phone.clone(), new.caller_name.clone());
    if let Some(jid) = new.journal_id {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT phone, caller_name FROM journal_entries WHERE id = $1")
                .bind(jid)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((p, n)) = row else {
            return Err(crate::records::RecordError::invalid(
                "journal_id",
                format!("journal entry {jid} does not exist"),
            )
            .into());
        };
        phone = phone.or(Some(p));
        name = name.or(n);
    }
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO ticket_counters (year, last_seq) VALUES ($1, 1) \
         ON CONFLICT (year) DO UPDATE SET last_seq = ticket_counters.last_seq + 1 \
         RETURNING last_seq",
    )
    .bind(year)
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO atm_tickets (year, seq, kind, category, atm_id, atm_address, phone, \
         caller_name, journal_id, description, state, operator, created_by, created_at, \
         deadline_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'registered', $11, $12, $13, $14, $13) \
         RETURNING id",
    )
    .bind(year)
    .bind(seq)
    .bind(new.kind.code())
    .bind(new.category.code())
    .bind(new.atm_id.as_str())
    .bind(address.as_str())
    .bind(phone.as_deref())
    .bind(name.as_deref())
    .bind(new.journal_id)
    .bind(new.description.as_str())
    .bind(operator)
    .bind(actor)
    .bind(ms(now))
    .bind(ms(deadline_at))
    .fetch_one(&mut *tx)
    .await?;
    event(
        &mut tx,
        id,
        None,
        TicketState::Registered,
        actor,
        role.as_str(),
        None,
        now,
    )
    .await?;
    let num = number(year, seq);
    audit::record(
        &mut tx,
        now,
        actor,
        "atm_ticket",
        id,
        "create",
        None,
        None,
        Some(&format!("{num} {} {}", new.category.code(), new.atm_id)),
    )
    .await?;
    if let Some(jid) = new.journal_id {
        sqlx::query(
            "UPDATE journal_entries SET tickets = CASE WHEN tickets IS NULL THEN $1 \
             ELSE tickets || ', ' || $1 END, appeal_type = COALESCE(appeal_type, 'atm_incident'), \
             updated_at = $2, last_activity_at = $2 WHERE id = $3",
        )
        .bind(num.as_str())
        .bind(ms(now))
        .bind(jid)
        .execute(&mut *tx)
        .await?;
    }
    // (The entry becomes an ATM appeal unless the operator typed it otherwise.)
    // §6.7.5: a security event suspends the ATM at once (an ATM already suspended stays
    // so, by the ticket that suspended it first).
    let suspended = new.kind == TicketKind::AtmSecurity && atm_state == "in_service";
    if suspended {
        sqlx::query(
            "UPDATE atms SET state = 'suspended', suspended_by = $1, updated_by = $2, \
             updated_at = $3 WHERE id = $4",
        )
        .bind(id)
        .bind(actor)
        .bind(ms(now))
        .bind(new.atm_id.as_str())
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            now,
            actor,
            "atm",
            id,
            "suspend",
            Some("state"),
            Some("in_service"),
            Some(&format!("{}: suspended by {num}", new.atm_id)),
        )
        .await?;
    }
    let ticket = load(&mut tx, id).await?;
    let (kind, count_of, hours) = match new.kind {
        TicketKind::AtmSecurity => (
            AlertKind::SecurityRepeat,
            rules.security_repeat_count,
            rules.security_repeat_hours,
        ),
        TicketKind::AtmFault => (
            AlertKind::FaultRepeat,
            rules.fault_repeat_count,
            rules.fault_repeat_hours,
        ),
    };
    let since = now - chrono::Duration::hours(i64::from(hours));
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM atm_tickets WHERE atm_id = $1 AND kind = $2 AND created_at > $3",
    )
    .bind(new.atm_id.as_str())
    .bind(new.kind.code())
    .bind(ms(since))
    .fetch_one(&mut *tx)
    .await?;
    let mut alerts = Vec::new();
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    if count >= count_of {
        let (n, sinks) =
            notices::alert(kind, &ticket, count, hours, notifying.targets, notifying.tz);
        super::outbox::enqueue(&mut tx, &n, &sinks, now).await?;
        alerts.push(Alert {
            kind,
            ticket_id: id,
            atm_id: new.atm_id.clone(),
            count,
            hours,
        });
    }
    tx.commit().await?;
    Ok(Registered {
        ticket,
        suspended,
        alerts,
    })
}

#[allow(clippy::too_many_arguments)]
async fn event(
    conn: &mut AnyConnection,
    id: i64,
    from: Option<TicketState>,
    to: TicketState,
    actor: &str,
    role: &str,
    note: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO atm_ticket_events (ticket_id, from_state, to_state, actor, role, note, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(from.map(|s| s.as_str()))
    .bind(to.as_str())
    .bind(actor)
    .bind(role)
    .bind(note)
    .bind(ms(at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Who asks for a transition.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub role: Role,
    /// The operator's extension (operator tokens).
    pub operator: Option<&'a str>,
    /// The name the records show.
    pub actor: &'a str,
}

impl Caller<'_> {
    /// Whether `t` was registered by this caller.
    pub fn is_author(&self, t: &Ticket) -> bool {
        self.role == Role::Operator
            && self.operator.is_some()
            && t.operator.as_deref() == self.operator
    }
}

/// What a transition did.
#[derive(Debug, Clone)]
pub struct Moved {
    pub ticket: Ticket,
    pub from: TicketState,
    /// The ATM went back into service.
    pub atm_in_service: bool,
}

/// Moves a ticket on, if the lifecycle and the caller's role allow it, with its effects:
/// notices to the departments (routed), to the security service (finding), to the
/// operator and the ATM back in service (restored).
pub async fn transition(
    store: &Store,
    id: i64,
    to: TicketState,
    note: Option<&str>,
    caller: Caller<'_>,
    now: DateTime<Utc>,
    notifying: &Notifying<'_>,
) -> Result<Moved, TicketError> {
    let mut tx = store.begin_write().await?;
    let t = load(&mut tx, id).await?;
    check_transition(t.kind, t.state, to, caller.role, caller.is_author(&t))?;
    let done = sqlx::query(
        "UPDATE atm_tickets SET state = $1, updated_at = $2, \
         restored_at = CASE WHEN $1 = 'restored' THEN $2 ELSE restored_at END, \
         closed_at = CASE WHEN $1 = 'closed' THEN $2 ELSE closed_at END \
         WHERE id = $3 AND state = $4",
    )
    .bind(to.as_str())
    .bind(ms(now))
    .bind(id)
    .bind(t.state.as_str())
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!(
            "ticket {} changed meanwhile; reload it",
            t.number
        ))
        .into());
    }
    event(
        &mut tx,
        id,
        Some(t.state),
        to,
        caller.actor,
        caller.role.as_str(),
        note,
        now,
    )
    .await?;
    audit::record(
        &mut tx,
        now,
        caller.actor,
        "atm_ticket",
        id,
        "update",
        Some("state"),
        Some(t.state.as_str()),
        Some(to.as_str()),
    )
    .await?;
    let mut atm_in_service = false;
    if to == TicketState::Restored {
        atm_in_service = release_atm(&mut tx, &t, caller.actor, now).await?;
    }
    let moved = load(&mut tx, id).await?;
    let addressed: Option<Addressed> = match to {
        TicketState::Routed => Some(notices::routed(&moved, notifying.targets, notifying.tz)),
        TicketState::Confirmed | TicketState::NotConfirmed => Some(notices::finding(
            &moved,
            to == TicketState::Confirmed,
            notifying.targets,
            notifying.tz,
        )),
        TicketState::Restored => Some(notices::restored(&moved, notifying.targets, notifying.tz)),
        _ => None,
    };
    if let Some((n, sinks)) = addressed {
        super::outbox::enqueue(&mut tx, &n, &sinks, now).await?;
    }
    tx.commit().await?;
    Ok(Moved {
        ticket: moved,
        from: t.state,
        atm_in_service,
    })
}

/// The restored ticket's ATM goes back into service, unless another open security ticket
/// still holds it (then that one holds it). Returns whether it is in service now.
async fn release_atm(
    conn: &mut AnyConnection,
    t: &Ticket,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let holder: Option<Option<i64>> =
        sqlx::query_scalar("SELECT suspended_by FROM atms WHERE id = $1 AND state = 'suspended'")
            .bind(t.atm_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let Some(holder) = holder else {
        return Ok(true);
    };
    if holder.is_some_and(|h| h != t.id) {
        return Ok(false);
    }
    let other: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM atm_tickets WHERE atm_id = $1 AND kind = 'atm_security' AND id <> $2 \
         AND state NOT IN ('restored', 'operator_notified', 'closed') ORDER BY id LIMIT 1",
    )
    .bind(t.atm_id.as_str())
    .bind(t.id)
    .fetch_optional(&mut *conn)
    .await?;
    let (state, by) = match other {
        Some(o) => ("suspended", Some(o)),
        None => ("in_service", None),
    };
    sqlx::query("UPDATE atms SET state = $1, suspended_by = $2, updated_by = $3, updated_at = $4 WHERE id = $5")
        .bind(state)
        .bind(by)
        .bind(actor)
        .bind(ms(now))
        .bind(t.atm_id.as_str())
        .execute(&mut *conn)
        .await?;
    audit::record(
        conn,
        now,
        actor,
        "atm",
        t.id,
        "restore",
        Some("state"),
        Some("suspended"),
        Some(&format!("{}: {state}", t.atm_id)),
    )
    .await?;
    Ok(other.is_none())
}

/// The lifecycle of a ticket, oldest first.
pub async fn events(store: &Store, id: i64) -> Result<Vec<TicketEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT from_state, to_state, actor, role, note, at FROM atm_ticket_events \
         WHERE ticket_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let from: Option<String> = r.try_get(0)?;
            let to: String = r.try_get(1)?;
            Ok(TicketEvent {
                from: from.as_deref().and_then(TicketState::parse),
                to: TicketState::parse(&to).ok_or_else(|| {
                    StoreError::Conflict(format!("stored state `{to}` is unknown"))
                })?,
                actor: r.try_get(2)?,
                role: r.try_get(3)?,
                note: r.try_get(4)?,
                at: from_ms(r.try_get(5)?),
            })
        })
        .collect()
}

/// Which tickets a list shows.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub kind: Option<TicketKind>,
    pub state: Option<TicketState>,
    pub atm_id: Option<String>,
    pub operator: Option<String>,
    pub journal_id: Option<i64>,
    /// Only tickets whose ATM is not yet restored.
    pub open: bool,
    pub before: Option<i64>,
    pub limit: usize,
}

/// Tickets, newest first.
pub async fn list(store: &Store, f: &TicketFilter) -> Result<Vec<Ticket>, StoreError> {
    let mut sql = super::Sql::new(&format!("{SELECT} WHERE 1 = 1"));
    use super::Param;
    if let Some(k) = f.kind {
        sql.push(" AND kind = ").bind(Param::Text(k.code().into()));
    }
    if let Some(s) = f.state {
        sql.push(" AND state = ")
            .bind(Param::Text(s.as_str().into()));
    }
    if let Some(a) = &f.atm_id {
        sql.push(" AND atm_id = ").bind(Param::Text(a.clone()));
    }
    if let Some(o) = &f.operator {
        sql.push(" AND operator = ").bind(Param::Text(o.clone()));
    }
    if let Some(j) = f.journal_id {
        sql.push(" AND journal_id = ").bind(Param::Int(j));
    }
    if f.open {
        sql.push(" AND state NOT IN ('restored', 'operator_notified', 'closed')");
    }
    if let Some(b) = f.before {
        sql.push(" AND id < ").bind(Param::Int(b));
    }
    sql.push(" ORDER BY id DESC LIMIT ")
        .bind(Param::Int(i64::try_from(f.limit).unwrap_or(500)));
    let now = Utc::now();
    let rows = sql.query().fetch_all(store.pool()).await?;
    rows.iter().map(|r| from_row(r, now)).collect()
}

/// Alerts the supervisors of tickets past their deadline with the ATM not restored, once
/// per ticket. Returns the tickets alerted now.
pub async fn remind_overdue(
    store: &Store,
    notifying: &Notifying<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<Ticket>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE state NOT IN ('restored', 'operator_notified', 'closed') \
         AND deadline_at < $1 ORDER BY id"
    ))
    .bind(ms(now))
    .fetch_all(store.pool())
    .await?;
    let mut alerted = Vec::new();
    let mut conn = store.pool().acquire().await?;
    for r in &rows {
        let t = from_row(r, now)?;
        let (n, sinks) = notices::alert(
            AlertKind::Overdue,
            &t,
            1,
            0,
            notifying.targets,
            notifying.tz,
        );
        if super::outbox::enqueue(&mut conn, &n, &sinks, now).await? > 0 {
            alerted.push(t);
        }
    }
    Ok(alerted)
}

/// Counts per ATM and per category.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TicketStats {
    pub by_atm: Vec<AtmStats>,
    pub by_category: Vec<CategoryStats>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AtmStats {
    pub atm_id: String,
    pub address: String,
    pub faults: i64,
    pub security: i64,
    /// Not yet restored.
    pub open: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CategoryStats {
    #[schema(value_type = String)]
    pub kind: TicketKind,
    #[schema(value_type = String)]
    pub category: AtmCategory,
    pub name: String,
    pub count: i64,
}

/// Tickets registered in `[from, to)`.
pub async fn stats(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<TicketStats, StoreError> {
    let rows = sqlx::query(
        "SELECT t.atm_id, a.address, \
         SUM(CASE WHEN t.kind = 'atm_fault' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN t.kind = 'atm_security' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN t.state NOT IN ('restored', 'operator_notified', 'closed') THEN 1 ELSE 0 END) \
         FROM atm_tickets t JOIN atms a ON a.id = t.atm_id \
         WHERE t.created_at >= $1 AND t.created_at < $2 GROUP BY t.atm_id, a.address ORDER BY t.atm_id",
    )
    .bind(ms(from))
    .bind(ms(to))
    .fetch_all(store.pool())
    .await?;
    let by_atm = rows
        .iter()
        .map(|r| {
            Ok(AtmStats {
                atm_id: r.try_get(0)?,
                address: r.try_get(1)?,
                faults: r.try_get(2)?,
                security: r.try_get(3)?,
                open: r.try_get(4)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    let rows = sqlx::query(
        "SELECT kind, category, COUNT(*) FROM atm_tickets \
         WHERE created_at >= $1 AND created_at < $2 GROUP BY kind, category ORDER BY kind, category",
    )
    .bind(ms(from))
    .bind(ms(to))
    .fetch_all(store.pool())
    .await?;
    let mut by_category = Vec::new();
    for r in &rows {
        let k: String = r.try_get(0)?;
        let c: String = r.try_get(1)?;
        let (Some(kind), Some(category)) = (TicketKind::parse(&k), AtmCategory::parse(&c)) else {
            continue;
        };
        by_category.push(CategoryStats {
            kind,
            category,
            name: category.name_ru().to_string(),
            count: r.try_get(2)?,
        });
    }
    Ok(TicketStats {
        by_atm,
        by_category,
    })
}
