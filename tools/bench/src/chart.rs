//! The run as a picture: throughput and p99 latency per second, one line per phase, phases
//! laid end to end on one time axis.

use plotters::prelude::*;

use crate::report::Report;

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

pub fn draw(report: &Report, path: &std::path::Path) -> anyhow::Result<()> {
    // Each phase's seconds, shifted to start where the previous phase ended.
    let mut offset = 0u64;
    let mut lines = Vec::new();
    for phase in &report.phases {
        let points: Vec<(u64, u64, f64)> = phase.series.iter().map(|s| (offset + s.t, s.ok, s.p99_ms)).collect();
        offset += phase.seconds.ceil() as u64 + 1;
        lines.push((phase.name.clone(), points));
    }
    let end = offset.max(1);
    let top_rate = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let top_latency = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.2))
        .fold(1.0, f64::max)
        * 1.1;

    let root = SVGBackend::new(path, (1100, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(400);
    let mut rate = ChartBuilder::on(&upper)
        .caption("accepted per second", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0u64..end, 0f64..top_rate)?;
    rate.configure_mesh().x_desc("seconds").draw()?;
    let mut latency = ChartBuilder::on(&lower)
        .caption("p99 latency, ms", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0u64..end, 0f64..top_latency)?;
    latency.configure_mesh().x_desc("seconds").draw()?;
    for (i, (name, points)) in lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        rate.draw_series(LineSeries::new(
            points.iter().map(|p| (p.0, p.1 as f64)),
            colour.stroke_width(2),
        ))?
        .label(name.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        latency.draw_series(LineSeries::new(
            points.iter().map(|p| (p.0, p.2)),
            colour.stroke_width(2),
        ))?;
    }
    rate.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
