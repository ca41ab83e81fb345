//! The admin's system pages: health, the running configuration (secrets masked), API tokens
//! for machines, and the retention purge with its dry run and a typed confirmation.

use super::pages::{role_name, Who};
use super::session::{Posted, Signed};
use super::{local_time, ConsoleError, ConsoleState};
use crate::records::access::can;
use crate::records::role::Role;
use crate::records::token::{check_holder, HolderError};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

/// A line of the health table: what, its state, and whether that is fine.
pub struct Check {
    what: &'static str,
    state: String,
    ok: bool,
}

fn yes(b: bool, y: &str, n: &str) -> String {
    if b { y } else { n }.to_string()
}

fn checks(h: &crate::health::Health) -> Vec<Check> {
    let mut out = vec![
        Check {
            what: "SIP",
            state: format!(
                "{} ({})",
                yes(h.sip.running, "работает", "не работает"),
                h.sip.listen
            ),
            ok: h.sip.running,
        },
        Check {
            what: "База данных",
            state: format!(
                "{}, {}",
                h.database.backend,
                yes(h.database.reachable, "доступна", "недоступна")
            ),
            ok: h.database.reachable,
        },
    ];
    if let Some(m) = &h.media {
        out.push(Check {
            what: "Медиапотоки",
            state: format!(
                "{} потоков, {}{}",
                m.threads,
                m.realtime_priority.map_or_else(
                    || "обычный приоритет".to_string(),
                    |p| format!("реальное время (SCHED_RR {p})")
                ),
                m.warning
                    .as_ref()
                    .map(|w| format!("; {w}"))
                    .unwrap_or_default()
            ),
            ok: m.warning.is_none(),
        });
    }
    if let Some(t) = &h.transcription {
        let jobs = t.jobs.as_ref().map_or_else(
            || "нет данных".to_string(),
            |j| {
                format!(
                    "ждут {}, идут {}, с ошибкой {}, готово {}",
                    j.pending, j.running, j.failed, j.done
                )
            },
        );
        let model = if t.engine.ready {
            format!(
                "модель загружена ({})",
                t.engine.model.as_deref().unwrap_or("?")
            )
        } else {
            format!(
                "модели нет, расшифровки ждут: {}",
                t.engine.warning.as_deref().unwrap_or("")
            )
        };
        out.push(Check {
            what: "Расшифровка голосовых сообщений",
            state: format!("{model}; задания: {jobs}"),
            ok: t.engine.ready && t.jobs.as_ref().is_some_and(|j| j.failed == 0),
        });
    }
    if let Some(b) = h.journal_backlog {
        out.push(Check {
            what: "Журнал: записи в очереди на запись",
            state: b.to_string(),
            ok: b == 0,
        });
    }
    if let Some(n) = &h.notifications {
        out.push(Check {
            what: "Уведомления: не доставлено",
            state: n
                .backlog
                .map_or_else(|| "нет данных".into(), |b| b.to_string()),
            ok: n.backlog.is_some_and(|b| b == 0),
        });
        out.push(Check {
            what: "Уведомления без адресата",
            state: if n.undeliverable.is_empty() {
                "нет".into()
            } else {
                n.undeliverable.join(", ")
            },
            ok: n.undeliverable.is_empty(),
        });
    }
    let until = h
        .hours
        .until
        .as_deref()
        .map(|t| t.replace('T', " "))
        .unwrap_or_else(|| "не в этом году".into());
    out.push(Check {
        what: "Рабочее время",
        state: if h.hours.open {
            format!("открыто до {until} ({})", h.hours.zone)
        } else {
            format!("закрыто, откроется {until} ({})", h.hours.zone)
        },
        // Closed is a state, not a fault.
        ok: true,
    });
    out
}

#[derive(Template)]
#[template(path = "system_health.html")]
struct HealthPage {
    user: Option<Who>,
    status: &'static str,
    version: &'static str,
    checks: Vec<Check>,
}

/// `/admin/health`: the same report as `/healthz`, in words.
pub async fn health(
    State(state): State<ConsoleState>,
    who: Signed<can::SystemRead>,
) -> Result<Response, ConsoleError> {
    let probe = state
        .health
        .as_ref()
        .ok_or_else(|| ConsoleError::NotFound("сервер запущен без телефонии".into()))?;
    let h = probe.check().await;
    let page = HealthPage {
        user: Some(Who::of(&who.session)),
        status: if h.running() {
            "работает"
        } else {
            "SIP не работает"
        },
        version: h.version,
        checks: checks(&h),
    };
    Ok(Html(page.render()?).into_response())
}

#[derive(Template)]
#[template(path = "system_config.html")]
struct ConfigPage<'a> {
    user: Option<Who>,
    config: &'a str,
}

/// `/admin/config`: the configuration this process runs, read-only, secrets masked.
pub async fn config(
    State(state): State<ConsoleState>,
    who: Signed<can::SystemRead>,
) -> Result<Response, ConsoleError> {
    let page = ConfigPage {
        user: Some(Who::of(&who.session)),
        config: &state.running_config,
    };
    Ok(Html(page.render()?).into_response())
}

struct TokenLine {
    id: i64,
    name: String,
    role: &'static str,
    operator: String,
    created: String,
    revoked: String,
}

#[derive(Template)]
#[template(path = "system_tokens.html")]
struct TokensPage {
    user: Option<Who>,
    tokens: Vec<TokenLine>,
    roles: Vec<(&'static str, &'static str)>,
    /// A new token's secret, shown once.
    created: Option<String>,
}

async fn tokens_page(
    state: &ConsoleState,
    who: &crate::desk::accounts::Session,
    created: Option<String>,
) -> Result<Response, ConsoleError> {
    let tokens = state
        .records
        .tokens()
        .await?
        .into_iter()
        .map(|t| TokenLine {
            id: t.id,
            name: t.name,
            role: role_name(t.role),
            operator: t.operator.unwrap_or_default(),
            created: local_time(&state.records, t.created_at),
            revoked: t
                .revoked_at
                .map(|r| local_time(&state.records, r))
                .unwrap_or_default(),
        })
        .collect();
    let page = TokensPage {
        user: Some(Who::of(who)),
        tokens,
        roles: Role::ALL
            .iter()
            .map(|r| (r.as_str(), role_name(*r)))
            .collect(),
        created,
    };
    Ok(Html(page.render()?).into_response())
}

/// `/admin/tokens`: the API's bearer tokens (never their secrets).
pub async fn tokens(
    State(state): State<ConsoleState>,
    who: Signed<can::TokensManage>,
) -> Result<Response, ConsoleError> {
    tokens_page(&state, &who.session, None).await
}

#[derive(Deserialize)]
pub struct NewTokenFields {
    name: String,
    role: String,
    #[serde(default)]
    operator: String,
}

/// `POST /admin/tokens`: a new token, its secret shown once on the page that follows.
/// [`HolderError`] as the admin reads it.
fn russian(e: &HolderError) -> String {
    match e {
        HolderError::Name => "`name`: от 1 до 200 символов".into(),
        HolderError::UnknownExtension(ext) => {
            format!("`operator`: {ext} — не настроенный внутренний номер")
        }
        HolderError::MissingExtension => {
            "`operator`: токен оператора называет его внутренний номер".into()
        }
        HolderError::ExtensionForOtherRole => {
            "`operator`: внутренний номер указывают только для оператора".into()
        }
    }
}

pub async fn create_token(
    State(state): State<ConsoleState>,
    posted: Posted<can::TokensManage, NewTokenFields>,
) -> Result<Response, ConsoleError> {
    let f = &posted.form;
    let bad = ConsoleError::BadRequest;
    let name = f.name.trim();
    let role = Role::parse(&f.role).ok_or_else(|| bad("`role`: неизвестная роль".into()))?;
    let operator = Some(f.operator.trim()).filter(|o| !o.is_empty());
    let extensions: Vec<String> = match &state.acd {
        Some(acd) => acd
            .snapshot()
            .await
            .operators
            .into_iter()
            .map(|o| o.extension)
            .collect(),
        None => Vec::new(),
    };
    let configured = |ext: &str| extensions.iter().any(|e| e == ext);
    check_holder(name, role, operator, configured).map_err(|e| bad(russian(&e)))?;
    let (_, secret) = state.records.create_token(name, role, operator).await?;
    tracing::info!(name, role = role.as_str(), by = %posted.signed.session.user.login, "API token made in the console");
    tokens_page(&state, &posted.signed.session, Some(secret)).await
}

/// `POST /admin/tokens/{id}/revoke`: the token stops working at once.
pub async fn revoke_token(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    posted: Posted<can::TokensManage, super::session::NoFields>,
) -> Result<Response, ConsoleError> {
    state.records.revoke_token(id).await?;
    tracing::info!(id, by = %posted.signed.session.user.login, "API token revoked in the console");
    Ok(Redirect::to("/admin/tokens").into_response())
}

/// The word an admin types to confirm a purge: deleting personal data cannot be undone.
pub const PURGE_WORD: &str = "УДАЛИТЬ";

struct PurgeLine {
    number: String,
    arrived: String,
    last: String,
    files: usize,
}

#[derive(Template)]
#[template(path = "system_retention.html")]
struct RetentionPage {
    user: Option<Who>,
    cutoff: String,
    dry_run: bool,
    lines: Vec<PurgeLine>,
    /// «3 записи журнала, 5 файлов, 0 отдельных форм обратной связи».
    summary: String,
    files_failed: Vec<String>,
    word: &'static str,
}

async fn retention_page(
    state: &ConsoleState,
    who: &crate::desk::accounts::Session,
    dry_run: bool,
) -> Result<Response, ConsoleError> {
    let report = state
        .records
        .purge(&state.data_dir, dry_run, &who.user.login)
        .await?;
    let lines: Vec<PurgeLine> = report
        .entries
        .iter()
        .map(|e| PurgeLine {
            number: format!("{}-{}", e.year, e.seq),
            arrived: local_time(&state.records, e.arrived_at),
            last: local_time(&state.records, e.last_activity_at),
            files: e.files.len(),
        })
        .collect();
    let page = RetentionPage {
        user: Some(Who::of(who)),
        cutoff: local_time(&state.records, report.cutoff),
        dry_run,
        summary: format!(
            "{} журнала, {}, {} обратной связи",
            super::count(lines.len() as u64, "запись", "записи", "записей"),
            super::count(
                lines.iter().map(|l| l.files as u64).sum(),
                "файл",
                "файла",
                "файлов"
            ),
            super::count(
                report.standalone_callbacks.max(0) as u64,
                "отдельная форма",
                "отдельные формы",
                "отдельных форм"
            ),
        ),
        lines,
        files_failed: report.files_failed,
        word: PURGE_WORD,
    };
    Ok(Html(page.render()?).into_response())
}

/// `/admin/retention`: what a purge would delete now (a dry run; nothing is touched).
pub async fn retention(
    State(state): State<ConsoleState>,
    who: Signed<can::RetentionRun>,
) -> Result<Response, ConsoleError> {
    retention_page(&state, &who.session, true).await
}

#[derive(Deserialize)]
pub struct PurgeFields {
    #[serde(default)]
    confirm: String,
}

/// `POST /admin/retention/purge`: purges, once the admin has typed [`PURGE_WORD`].
pub async fn purge(
    State(state): State<ConsoleState>,
    posted: Posted<can::RetentionRun, PurgeFields>,
) -> Result<Response, ConsoleError> {
    if posted.form.confirm.trim() != PURGE_WORD {
        return Err(ConsoleError::BadRequest(format!(
            "`confirm`: для удаления введите слово {PURGE_WORD}"
        )));
    }
    retention_page(&state, &posted.signed.session, false).await
}
