//! A hand-written SVG of a run: connected components (top) and mean and max degree (bottom) over
//! virtual time, as polylines. Only integers and fixed-precision numbers go in, so the same run
//! gives the same bytes.

use std::fmt::Write as _;

use super::runner::Sample;

const WIDTH: f64 = 800.0;
const PANEL: f64 = 180.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 30.0;
const GAP: f64 = 50.0;

/// The SVG document for `samples` over `duration_s` seconds, titled `title`.
pub(crate) fn render(title: &str, samples: &[Sample], duration_s: u64) -> String {
    let mut out = String::new();
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(out, r#"<text x="{LEFT}" y="18" font-size="14">{}</text>"#, escape(title));
    let components: Vec<(u64, f64)> = samples.iter().map(|s| (s.at_secs, s.components as f64)).collect();
    let mean: Vec<(u64, f64)> = samples.iter().map(|s| (s.at_secs, s.mean_degree)).collect();
    let max: Vec<(u64, f64)> = samples.iter().map(|s| (s.at_secs, s.max_degree as f64)).collect();
    panel(&mut out, TOP, duration_s, "connected components", &[("#c0392b", "components", &components)]);
    panel(
        &mut out,
        TOP + PANEL + GAP,
        duration_s,
        "degree",
        &[("#2c7fb8", "mean degree", &mean), ("#7b3294", "max degree", &max)],
    );
    let _ = writeln!(out, "</svg>");
    out
}

type Series<'a> = (&'a str, &'a str, &'a [(u64, f64)]);

fn panel(out: &mut String, top: f64, duration_s: u64, label: &str, series: &[Series<'_>]) {
    let right = WIDTH - 20.0;
    let bottom = top + PANEL;
    let y_max =
        series.iter().flat_map(|(_, _, points)| points.iter().map(|p| p.1)).fold(1.0, f64::max).ceil();
    let x = |t: u64| LEFT + (right - LEFT) * t as f64 / duration_s.max(1) as f64;
    let y = |v: f64| bottom - PANEL * v / y_max;
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{:.0}" height="{PANEL}" fill="none" stroke="#999"/>"##,
        right - LEFT
    );
    let _ = writeln!(out, r#"<text x="5" y="{:.0}">{y_max:.0}</text>"#, top + 10.0);
    let _ = writeln!(out, r#"<text x="5" y="{bottom:.0}">0</text>"#);
    let _ =
        writeln!(out, r#"<text x="{LEFT}" y="{:.0}">{label} (t = 0 … {duration_s} s)</text>"#, bottom + 16.0);
    for (i, (colour, name, points)) in series.iter().enumerate() {
        let coords: Vec<String> = points.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            coords.join(" ")
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.0}" y="{:.0}" fill="{colour}">{name}</text>"#,
            right - 220.0 + 110.0 * i as f64,
            bottom + 16.0
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
