//! The job page's chart: the duration and the lateness of a job's last runs as an SVG drawn
//! on the server (no script, no external asset), oldest run on the left.

use std::fmt::Write as _;

const W: f64 = 640.0;
const H: f64 = 160.0;
const PAD: f64 = 24.0;

/// One run's figures, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub duration: Option<f64>,
    pub lateness: Option<f64>,
}

/// An SVG of `points` (oldest first): durations in blue, lateness in orange, each scaled to
/// its own maximum, which the legend states.
pub fn svg(points: &[Point]) -> String {
    let max = |f: fn(&Point) -> Option<f64>| {
        points
            .iter()
            .filter_map(f)
            .filter(|v| v.is_finite())
            .fold(0.0_f64, f64::max)
    };
    let (dmax, lmax) = (max(|p| p.duration), max(|p| p.lateness));
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"run-chart\" width=\"{W}\" \
         height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"duration and \
         lateness of the last {n} runs\"><rect width=\"{W}\" height=\"{H}\" fill=\"#fff\" \
         stroke=\"#ddd\"/>",
        n = points.len()
    );
    if points.is_empty() {
        out.push_str("<text x=\"12\" y=\"24\" fill=\"#777\">no runs yet</text></svg>");
        return out;
    }
    for (f, top, colour, class) in [
        (
            (|p: &Point| p.duration) as fn(&Point) -> Option<f64>,
            dmax,
            "#2f6fb3",
            "duration",
        ),
        (|p: &Point| p.lateness, lmax, "#d9822b", "lateness"),
    ] {
        let step = if points.len() > 1 {
            (W - 2.0 * PAD) / (points.len() - 1) as f64
        } else {
            0.0
        };
        let mut line = String::new();
        for (i, p) in points.iter().enumerate() {
            let Some(v) = f(p).filter(|v| v.is_finite()) else {
                continue;
            };
            let x = PAD + step * i as f64;
            let y = H - PAD - if top > 0.0 { v / top } else { 0.0 } * (H - 2.0 * PAD);
            let _ = write!(line, "{x:.1},{y:.1} ");
        }
        let _ = write!(
            out,
            "<polyline class=\"{class}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" \
             points=\"{}\"/>",
            line.trim_end()
        );
    }
    let _ = write!(
        out,
        "<text x=\"{PAD}\" y=\"14\" font-size=\"11\" fill=\"#2f6fb3\">duration (max \
         {dmax:.2}s)</text><text x=\"{x}\" y=\"14\" font-size=\"11\" fill=\"#d9822b\">lateness \
         (max {lmax:.2}s)</text></svg>",
        x = W / 2.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_scales_each_line_to_its_maximum() {
        let s = svg(&[
            Point {
                duration: Some(1.0),
                lateness: Some(0.5),
            },
            Point {
                duration: Some(2.0),
                lateness: None,
            },
        ]);
        assert!(s.starts_with("<svg "));
        assert!(s.contains("points=\"24.0,80.0 616.0,24.0\""), "{s}");
        assert!(s.contains("points=\"24.0,24.0\""), "{s}");
        assert!(s.contains("duration (max 2.00s)"));
        assert!(svg(&[]).contains("no runs yet"));
    }
}
