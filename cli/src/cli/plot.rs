//! `--plot FILE.svg`: write throughput, RSS against the budget, and hot/cold tier sizes over time.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::CliResult;
use super::metrics::Sample;

const MIB: f64 = 1024.0 * 1024.0;

/// Draws the three panels of the run's timeline into an SVG file.
pub fn draw(path: &Path, samples: &[Sample], budget_bytes: u64) -> CliResult<()> {
    if samples.len() < 2 {
        return Err("the run was too short to plot (fewer than 2 samples)".into());
    }
    let t_max = samples.last().map_or(1.0, |s| s.t).max(0.001);
    // Rates over about one second (5 samples), so fsync jitter does not hide the trend.
    let rates: Vec<(f64, f64)> = samples
        .windows(6.min(samples.len()))
        .map(|w| {
            let (a, b) = (&w[0], &w[w.len() - 1]);
            let dt = (b.t - a.t).max(1e-6);
            (b.t, b.written.saturating_sub(a.written) as f64 / dt)
        })
        .collect();
    let mesh = |c: &mut Chart<'_, '_>| {
        c.configure_mesh()
            .x_desc("seconds")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
    };
    let err = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    let root = SVGBackend::new(path, (1100, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let panels = root.split_evenly((3, 1));

    let rate_max = rates.iter().map(|r| r.1).fold(1.0, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&panels[0])
        .caption("write throughput (entries/s)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(25)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_max, 0.0..rate_max)
        .map_err(|e| err(&e))?;
    c.configure_mesh()
        .x_desc("seconds")
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .draw()
        .map_err(|e| err(&e))?;
    c.draw_series(LineSeries::new(rates, &BLUE))
        .map_err(|e| err(&e))?;
    phase_marks(&mut c, samples, rate_max).map_err(|e| err(&e))?;

    let rss: Vec<(f64, f64)> = samples.iter().map(|s| (s.t, s.rss as f64 / MIB)).collect();
    let budget = budget_bytes as f64 / MIB;
    let mem_max = rss.iter().map(|r| r.1).fold(budget, f64::max) * 1.15;
    let mut c = ChartBuilder::on(&panels[1])
        .caption(
            "resident memory of the whole process (MiB) vs engine budget",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(25)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_max, 0.0..mem_max)
        .map_err(|e| err(&e))?;
    mesh(&mut c).map_err(|e| err(&e))?;
    c.draw_series(LineSeries::new(rss, &RED))
        .map_err(|e| err(&e))?
        .label("RSS")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    c.draw_series(LineSeries::new(
        vec![(0.0, budget), (t_max, budget)],
        BLACK.stroke_width(1),
    ))
    .map_err(|e| err(&e))?
    .label("budget")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| err(&e))?;

    let hot: Vec<(f64, f64)> = samples.iter().map(|s| (s.t, s.hot_bytes as f64 / MIB)).collect();
    let cold: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| (s.t, s.cold_stored_bytes as f64 / MIB))
        .collect();
    let size_max = hot.iter().chain(&cold).map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&panels[2])
        .caption("tier sizes (MiB): hot ring vs cold stored", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(25)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_max, 0.0..size_max)
        .map_err(|e| err(&e))?;
    mesh(&mut c).map_err(|e| err(&e))?;
    c.draw_series(LineSeries::new(hot, &MAGENTA))
        .map_err(|e| err(&e))?
        .label("hot")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
    c.draw_series(LineSeries::new(cold, &GREEN))
        .map_err(|e| err(&e))?
        .label("cold (compressed)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Thin vertical lines and names where a new phase starts.
fn phase_marks(
    c: &mut Chart<'_, '_>,
    samples: &[Sample],
    y_max: f64,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let mut prev = "";
    for s in samples {
        if s.phase != prev {
            prev = &s.phase;
            c.draw_series(std::iter::once(PathElement::new(
                vec![(s.t, 0.0), (s.t, y_max)],
                BLACK.mix(0.3),
            )))?;
            c.draw_series(std::iter::once(Text::new(
                s.phase.clone(),
                (s.t, y_max * 0.95),
                ("sans-serif", 13),
            )))?;
        }
    }
    Ok(())
}
