//! SQL of ATM tickets and the ATM registry. The writes run in the caller's transaction
//! (`…_in`): the façade checks the lifecycle and adds the notices, so that the ticket or
//! its transition, its lifecycle event, the audit line, the ATM's state, the journal's
//! reference and the outbox rows commit together or not at all.

use super::{audit, from_ms, ms, opt_from_ms, Store, StoreError};
use crate::records::atm::{AtmCategory, TicketKind};
use crate::records::role::Role;
use crate::records::tickets::{
    next_states, script_hint, AtmConfig, Caller, NewTicket, Ticket, TicketEvent, TicketState,
};
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

/// A ticket, read in the caller's transaction.
pub async fn load_in(conn: &mut AnyConnection, id: i64) -> Result<Ticket, StoreError> {
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
    load_in(&mut conn, id).await
}

/// An ATM's address and state (`in_service`, `suspended`), read in the caller's
/// transaction; `None` if the registry has no such ATM.
pub async fn atm_in(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT address, state FROM atms WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// A registration as written: the operator's ticket with what the façade has resolved.
#[derive(Debug, Clone)]
pub struct NewRow<'a> {
    pub new: &'a NewTicket,
    /// The ATM's address, from the registry.
    pub address: &'a str,
    /// The caller, from the request or its journal entry.
    pub phone: Option<&'a str>,
    pub caller_name: Option<&'a str>,
    /// The registering operator's extension.
    pub operator: Option<&'a str>,
    pub role: Role,
    pub actor: &'a str,
    /// The year its number belongs to.
    pub year: i64,
    pub deadline_at: DateTime<Utc>,
    /// It puts its ATM out of service (a security event on an ATM in service).
    pub suspends: bool,
}

/// Registers a ticket in the caller's transaction: number, lifecycle event, audit, the
/// journal's reference and, when it suspends, the ATM's suspension. Returns the ticket.
pub async fn insert_in(
    tx: &mut AnyConnection,
    row: &NewRow<'_>,
    now: DateTime<Utc>,
) -> Result<Ticket, StoreError> {
    let new = row.new;
    let (year, actor) = (row.year, row.actor);
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
    .bind(row.address)
    .bind(row.phone)
    .bind(row.caller_name)
    .bind(new.journal_id)
    .bind(new.description.as_str())
    .bind(row.operator)
    .bind(actor)
    .bind(ms(now))
    .bind(ms(row.deadline_at))
    .fetch_one(&mut *tx)
    .await?;
    event(
        &mut *tx,
        id,
        None,
        TicketState::Registered,
        actor,
        row.role.as_str(),
        None,
        now,
    )
    .await?;
    let num = number(year, seq);
    audit::record(
        &mut *tx,
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
    if row.suspends {
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
            &mut *tx,
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
    load_in(tx, id).await
}

/// Tickets of `kind` registered on an ATM after `since` (the repeat alerts' count), in the
/// caller's transaction.
pub async fn count_since_in(
    conn: &mut AnyConnection,
    atm_id: &str,
    kind: TicketKind,
    since: DateTime<Utc>,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM atm_tickets WHERE atm_id = $1 AND kind = $2 AND created_at > $3",
    )
    .bind(atm_id)
    .bind(kind.code())
    .bind(ms(since))
    .fetch_one(&mut *conn)
    .await?)
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

/// Moves `t` on to `to` in the caller's transaction (the façade has checked that the
/// lifecycle allows it): state, lifecycle event, audit line and, when restored, the ATM
/// back in service. Returns whether its ATM is in service now (`false` unless restored).
pub async fn move_in(
    tx: &mut AnyConnection,
    t: &Ticket,
    to: TicketState,
    note: Option<&str>,
    caller: &Caller<'_>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE atm_tickets SET state = $1, updated_at = $2, \
         restored_at = CASE WHEN $1 = 'restored' THEN $2 ELSE restored_at END, \
         closed_at = CASE WHEN $1 = 'closed' THEN $2 ELSE closed_at END \
         WHERE id = $3 AND state = $4",
    )
    .bind(to.as_str())
    .bind(ms(now))
    .bind(t.id)
    .bind(t.state.as_str())
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!(
            "ticket {} changed meanwhile; reload it",
            t.number
        )));
    }
    event(
        &mut *tx,
        t.id,
        Some(t.state),
        to,
        caller.actor,
        caller.role.as_str(),
        note,
        now,
    )
    .await?;
    audit::record(
        &mut *tx,
        now,
        caller.actor,
        "atm_ticket",
        t.id,
        "update",
        Some("state"),
        Some(t.state.as_str()),
        Some(to.as_str()),
    )
    .await?;
    if to == TicketState::Restored {
        return release_atm(tx, t, caller.actor, now).await;
    }
    Ok(false)
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

/// Tickets past their deadline with the ATM not restored, oldest first.
pub async fn overdue(store: &Store, now: DateTime<Utc>) -> Result<Vec<Ticket>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE state NOT IN ('restored', 'operator_notified', 'closed') \
         AND deadline_at < $1 ORDER BY id"
    ))
    .bind(ms(now))
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(|r| from_row(r, now)).collect()
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
