//! `--plot OUT.svg`: ops/s per workload (the table's rate rows) per engine, as horizontal
//! grouped bars on a log scale (rates span 10^3 to 10^7).

use std::path::Path;

use plotters::prelude::*;

use crate::rows::{Cell, Kind, RowSpec};
use crate::suite::EngineResult;

const COLORS: [RGBColor; 3] =
    [RGBColor(0x2e, 0x7d, 0x32), RGBColor(0xc6, 0x28, 0x28), RGBColor(0x15, 0x65, 0xc0)];
const ROW_PX: u32 = 44;
const LABEL_PX: u32 = 360;

/// Draws the chart of every rate row; rows where an engine has no number show no bar for it.
pub fn svg(
    path: &Path,
    title: &str,
    specs: &[RowSpec],
    results: &[EngineResult],
) -> Result<(), String> {
    let rate_rows: Vec<&RowSpec> = specs.iter().filter(|s| s.kind == Kind::Rate).collect();
    let values: Vec<Vec<Option<f64>>> = rate_rows
        .iter()
        .map(|s| results.iter().map(|r| r.result.get(s.id).and_then(Cell::value)).collect())
        .collect();
    let all = values.iter().flatten().flatten().copied();
    let (lo, hi) = all.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return Err("no rates to plot".into());
    }
    // Whole decades around the data, so bars start at a round number.
    let x_min = 10f64.powf(lo.max(1.0).log10().floor());
    let x_max = 10f64.powf(hi.log10().ceil());
    let n = rate_rows.len();
    let height = 140 + ROW_PX * n as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| format!("plot: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .margin_left(LABEL_PX)
        .x_label_area_size(44)
        .margin_bottom(40)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0f64..n as f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("operations per second (log scale)")
        .x_label_formatter(&|v| short(*v))
        .draw()
        .map_err(err)?;
    let bar_h = 0.8 / results.len().max(1) as f64;
    for (row, vals) in values.iter().enumerate() {
        let top = (n - 1 - row) as f64 + 0.9;
        for (e, v) in vals.iter().enumerate() {
            let Some(v) = *v else { continue };
            let color = COLORS[e % COLORS.len()];
            let (y0, y1) = (top - (e + 1) as f64 * bar_h, top - e as f64 * bar_h);
            chart
                .draw_series([Rectangle::new([(x_min, y0), (v, y1)], color.filled())])
                .map_err(err)?;
        }
    }
    // Row labels left of the plot, at pixel positions (the y axis is numeric).
    for (row, spec) in rate_rows.iter().enumerate() {
        let (_, y) = chart.backend_coord(&(x_min, (n - 1 - row) as f64 + 0.5));
        let style = ("sans-serif", 13).into_font().color(&BLACK).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Right,
                plotters::style::text_anchor::VPos::Center,
            ),
        );
        root.draw(&Text::new(spec.label.trim().to_string(), (LABEL_PX as i32 - 8, y), style))
            .map_err(err)?;
    }
    legend(&root, results, height).map_err(err)?;
    root.present().map_err(err)
}

/// The engines' colour key under the chart.
fn legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    results: &[EngineResult],
    height: u32,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (e, r) in results.iter().enumerate() {
        let x = LABEL_PX as i32 + 20 + 140 * e as i32;
        let y = height as i32 - 20;
        let color = COLORS[e % COLORS.len()];
        root.draw(&Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()))?;
        root.draw(&Text::new(r.name.clone(), (x + 20, y - 7), ("sans-serif", 14)))?;
    }
    Ok(())
}

fn short(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v => format!("{v}"),
    }
}
