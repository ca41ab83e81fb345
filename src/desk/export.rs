//! The journal as a CSV file for a spreadsheet, streamed: the API's `export.csv` and the
//! console's «Экспорт CSV» both take it from here.
//!
//! Excel reads a CSV by the system's list separator: `,` in an English locale, `;` in a
//! Russian one (where `,` is the decimal mark). A file with the wrong one opens as a single
//! column, so the caller picks the [`Separator`]. The UTF-8 byte-order mark makes Excel read
//! the Cyrillic headings as UTF-8, and every cell is [`neutralise`]d against formulas.

use super::Records;
use crate::records::journal::JournalFilter;
use crate::records::spreadsheet::neutralise;
use crate::store::journal::{self as sql, ExportRow};
use crate::store::Store;
use axum::body::Bytes;

/// The regulation's Appendix 6 headings (columns 1–10), then the machine's call detail.
pub const CSV_HEADINGS: [&str; 21] = [
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
    "Год",
    "Идентификатор звонка",
    "Время поступления",
    "Время ответа",
    "Время окончания",
    "Ожидание, с",
    "Результат",
    "Оператор",
    "Запись разговора",
    "Повторное обращение к №",
    "Заявки по банкоматам",
];

/// The field separator of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separator {
    /// `,`: RFC 4180, and Excel in English locales.
    Comma,
    /// `;`: Excel in the Russian locale.
    Semicolon,
}

impl Separator {
    pub fn parse(s: &str) -> Option<Separator> {
        match s {
            "comma" | "," => Some(Separator::Comma),
            "semicolon" | ";" => Some(Separator::Semicolon),
            _ => None,
        }
    }

    fn byte(self) -> u8 {
        match self {
            Separator::Comma => b',',
            Separator::Semicolon => b';',
        }
    }
}

/// How much of the file is handed on at a time.
const CHUNK: usize = 64 * 1024;

/// A chunk of the file, or the error that cut it short (the status line is already sent
/// by then, so the download breaks rather than ending silently short).
pub type CsvChunk = Result<Bytes, std::io::Error>;

impl Records {
    /// The entries that match `filter`, oldest first, as CSV chunks. The file is written by
    /// a task of its own while the receiver is read; dropping the receiver stops it.
    pub fn journal_csv(
        &self,
        filter: JournalFilter,
        sep: Separator,
    ) -> tokio::sync::mpsc::Receiver<CsvChunk> {
        let tz = self.calendar.tz();
        let store = self.store.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            if let Err(e) = stream_csv(&store, filter, tz, sep, &tx).await {
                tracing::error!(error = %e, "journal export failed");
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }
}

async fn stream_csv(
    store: &Store,
    filter: JournalFilter,
    tz: chrono_tz::Tz,
    sep: Separator,
    tx: &tokio::sync::mpsc::Sender<CsvChunk>,
) -> Result<(), std::io::Error> {
    let writer = |bytes: Vec<u8>| {
        csv::WriterBuilder::new()
            .delimiter(sep.byte())
            .from_writer(bytes)
    };
    let mut bom = Vec::with_capacity(CHUNK * 2);
    bom.extend_from_slice("\u{feff}".as_bytes());
    let mut w = writer(bom);
    w.write_record(CSV_HEADINGS)?;
    let mut fields: [String; 21] = Default::default();
    let mut batches = sql::export(store.clone(), filter);
    while let Some(batch) = batches.recv().await {
        for row in &batch.map_err(std::io::Error::other)? {
            csv_fields(row, tz, sep, &mut fields);
            fields.iter_mut().for_each(neutralise);
            w.write_record(&fields)?;
        }
        // The writer buffers 8 KiB itself; what it has handed on is in get_ref().
        if w.get_ref().len() >= CHUNK {
            let full = std::mem::replace(&mut w, writer(Vec::with_capacity(CHUNK * 2)));
            let chunk = full.into_inner().map_err(|e| e.into_error())?;
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return Ok(());
            }
        }
    }
    let rest = w.into_inner().map_err(|e| e.into_error())?;
    let _ = tx.send(Ok(Bytes::from(rest))).await;
    Ok(())
}

/// `dd.mm.yyyy HH:MM:SS` in the calendar's zone, into `out` (cleared); nothing for `None`.
fn local_time(ms: Option<i64>, tz: chrono_tz::Tz, out: &mut String) {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;
    out.clear();
    if let Some(ms) = ms {
        let t = crate::store::from_ms(ms).with_timezone(&tz);
        let _ = write!(
            out,
            "{:02}.{:02}.{:04} {:02}:{:02}:{:02}",
            t.day(),
            t.month(),
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        );
    }
}

fn set(out: &mut String, v: Option<&str>) {
    out.clear();
    if let Some(v) = v {
        out.push_str(v);
    }
}

/// One entry's CSV fields, in the order of [`CSV_HEADINGS`], written into `f` (reused from
/// row to row, so the export allocates per row only what the database driver does). With
/// `;` between fields the decimal mark is `,`, as the Russian locale reads numbers.
fn csv_fields(e: &ExportRow, tz: chrono_tz::Tz, sep: Separator, f: &mut [String; 21]) {
    use std::fmt::Write;
    f[0].clear();
    let _ = write!(f[0], "{}", e.seq);
    local_time(Some(e.arrived_at), tz, &mut f[1]);
    f[1].truncate(10); // the date only
    set(&mut f[2], e.caller_name.as_deref());
    set(&mut f[3], e.caller_status.map(|s| s.russian()));
    set(&mut f[4], Some(&e.phone));
    local_time(e.callback_at, tz, &mut f[5]);
    set(&mut f[6], e.content.as_deref());
    set(&mut f[7], e.forwarded_to.as_deref());
    local_time(e.forwarded_at, tz, &mut f[8]);
    local_time(e.done_at, tz, &mut f[9]);
    f[10].clear();
    let _ = write!(f[10], "{}", e.year);
    set(&mut f[11], e.call_id.as_deref());
    local_time(Some(e.arrived_at), tz, &mut f[12]);
    local_time(e.answered_at, tz, &mut f[13]);
    local_time(e.ended_at, tz, &mut f[14]);
    f[15].clear();
    if let Some(w) = e.wait_ms {
        let _ = write!(f[15], "{:.1}", w as f64 / 1000.0);
        if sep == Separator::Semicolon {
            f[15] = f[15].replace('.', ",");
        }
    }
    set(&mut f[16], Some(e.disposition.russian()));
    set(&mut f[17], e.operator.as_deref());
    set(&mut f[18], e.recording.as_deref());
    f[19].clear();
    if let (Some(seq), Some(year)) = (e.repeat_seq, e.repeat_year) {
        let _ = write!(f[19], "{seq}/{year}");
    }
    set(&mut f[20], e.tickets.as_deref());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_parse_by_name_or_character() {
        assert_eq!(Separator::parse("semicolon"), Some(Separator::Semicolon));
        assert_eq!(Separator::parse(";"), Some(Separator::Semicolon));
        assert_eq!(Separator::parse("comma"), Some(Separator::Comma));
        assert_eq!(Separator::parse("tab"), None);
    }
}
