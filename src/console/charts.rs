//! The supervisor's charts as server-rendered SVG (no chart library): stacked bars of the
//! calls and a line of the service level, over labelled buckets (the hours of a day, or
//! the days of a period).

use crate::records::hourly::Hour;
use std::fmt::Write;

const CHART_W: f64 = 600.0;
const CHART_H: f64 = 160.0;

fn bar_width(n: usize) -> f64 {
    CHART_W / n.max(1) as f64
}

/// The axis labels: every `every`-th bucket's.
fn axis(svg: &mut String, buckets: &[(String, Hour)], every: usize) {
    let bar = bar_width(buckets.len());
    for (i, (label, _)) in buckets.iter().enumerate().step_by(every.max(1)) {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" class=\"axis\">{label}</text>",
            i as f64 * bar + 2.0,
            CHART_H - 2.0
        );
    }
}

/// Stacked bars per bucket: answered (green), voicemail (amber), abandoned (red).
pub fn calls(buckets: &[(String, Hour)], label_every: usize, over: &str) -> String {
    let top = buckets
        .iter()
        .map(|(_, h)| h.answered + h.voicemail + h.abandoned)
        .max()
        .unwrap_or(0)
        .max(1);
    let bar = bar_width(buckets.len());
    let scale = (CHART_H - 20.0) / f64::from(top);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"Звонки {over}: \
         принятые, голосовая почта, потерянные\"><text x=\"2\" y=\"10\" class=\"axis\">{top}</text>"
    );
    for (i, (label, h)) in buckets.iter().enumerate() {
        let x = i as f64 * bar + bar * 0.1;
        let mut y = CHART_H - 14.0;
        for (n, class) in [
            (h.answered, "answered"),
            (h.voicemail, "voicemail"),
            (h.abandoned, "abandoned"),
        ] {
            if n == 0 {
                continue;
            }
            let height = f64::from(n) * scale;
            y -= height;
            let _ = write!(
                svg,
                "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{height:.1}\"><title>{label} — {n}</title></rect>",
                bar * 0.8
            );
        }
    }
    axis(&mut svg, buckets, label_every);
    svg.push_str("</svg>");
    svg
}

/// The service level of each bucket with calls offered, as a line over 0–100 %.
pub fn service(
    buckets: &[(String, Hour)],
    label_every: usize,
    over: &str,
    target_s: u64,
) -> String {
    let plot = CHART_H - 20.0;
    let bar = bar_width(buckets.len());
    let mut points = String::new();
    let mut dots = String::new();
    for (i, (label, h)) in buckets.iter().enumerate() {
        if let Some(sl) = h.service_level {
            let x = i as f64 * bar + bar / 2.0;
            let y = 6.0 + plot * (1.0 - sl);
            let _ = write!(points, "{x:.1},{y:.1} ");
            let _ = write!(
                dots,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\"><title>{label} — {:.0} %</title></circle>",
                sl * 100.0
            );
        }
    }
    let mut svg = format!(
        "<svg viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"Уровень обслуживания \
         {over} (ответ за {target_s} с)\"><text x=\"2\" y=\"10\" class=\"axis\">100 %</text>"
    );
    let _ = write!(
        svg,
        "<polyline class=\"sl\" fill=\"none\" points=\"{}\"/>{dots}",
        points.trim_end()
    );
    axis(&mut svg, buckets, label_every);
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_draw_each_bucket_with_calls_and_only_those() {
        let mut buckets: Vec<(String, Hour)> = (0..24)
            .map(|i| (format!("{i}:00"), Hour::default()))
            .collect();
        buckets[9].1 = Hour {
            answered: 4,
            abandoned: 1,
            voicemail: 2,
            service_level: Some(0.5),
        };
        let bars = calls(&buckets, 3, "по часам");
        assert_eq!(bars.matches("<rect").count(), 3);
        assert!(bars.contains("<title>9:00 — 4</title>"));
        assert_eq!(
            bars.matches("class=\"axis\">").count(),
            1 + 8,
            "the top and every 3rd"
        );
        let line = service(&buckets, 3, "по часам", 20);
        assert_eq!(line.matches("<circle").count(), 1);
        assert!(line.contains("9:00 — 50 %"));
        assert!(line.contains("за 20 с"));
    }
}
