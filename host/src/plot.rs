//! Learning curves from run folders: the smoothed episode return of each run's `monitor.csv`
//! against environment steps (or wall time, or episodes), one line per run, into a PNG.
//!
//! For episode `i` (file order) with return `r_i`, length `l_i` and time `t_i`:
//!
//! - x is `Σ_{j≤i} l_j` (env steps, as SB3's `results_plotter` `X_TIMESTEPS`), `t_i` (wall
//!   time) or `i + 1` (episodes);
//! - y is the trailing moving average `(1/k) Σ_{j=i−k+1..i} r_j`, `k = min(window, i + 1)`
//!   (so the curve starts at the first episode; `window = 1` draws the raw returns).
//!
//! With [`PlotOptions::group`], runs that share a label (e.g. five seeds of one algorithm)
//! become one line, the mean of their curves, in a band from their minimum to their maximum:
//! each run's curve is interpolated linearly at 200 points spanning the x range that *all*
//! the runs of the group cover.
//!
//! Text needs a TrueType font, loaded at run time (plotters' pure-Rust `ab_glyph` renderer,
//! nothing to link): [`PlotOptions::font`], else `$ACKTR_PLOT_FONT`, else DejaVu Sans or
//! Liberation Sans from the usual system folders (Debian/Ubuntu: `apt-get install
//! fonts-dejavu-core`), else whatever `fc-match sans-serif` names.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::error::{HostError, Result};
use crate::run::MONITOR_FILE;

/// What the x axis shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XAxis {
    /// Cumulative environment steps (the sum of the `l` column).
    #[default]
    Steps,
    /// Wall time since the run started (the `t` column), in seconds, minutes or hours.
    WallTime,
    /// Finished episodes.
    Episodes,
}

/// How to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotOptions {
    /// The x axis. Default [`XAxis::Steps`].
    pub x_axis: XAxis,
    /// Moving-average window in episodes (≥ 1). Default 20.
    pub window: usize,
    /// One legend label per run, in the order of `runs`; empty (the default) uses each run
    /// folder's name.
    pub labels: Vec<String>,
    /// Draw runs with equal labels as one mean line in a min–max band. Default `false`.
    pub group: bool,
    /// Title above the plot. Default: the `env_id` of the first monitor file, or none.
    pub title: Option<String>,
    /// Image size in pixels. Default 1000 × 600.
    pub size: (u32, u32),
    /// A `.ttf`/`.otf` file for the text; default: see the [module docs](self).
    pub font: Option<PathBuf>,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            x_axis: XAxis::Steps,
            window: 20,
            labels: Vec::new(),
            group: false,
            title: None,
            size: (1000, 600),
            font: None,
        }
    }
}

/// Number of x positions a group's curves are interpolated at.
const GRID: usize = 200;

/// Line colours (matplotlib's `tab10` cycle).
const COLORS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// `(x, y)` points with non-decreasing `x`.
type Curve = Vec<(f64, f64)>;

/// One line of the plot, with an optional band.
struct Series {
    label: String,
    line: Curve,
    band: Option<Vec<(f64, f64, f64)>>,
}

/// Plot the learning curves of `runs` (run folders, or `monitor.csv` files directly) into the
/// PNG `out`.
///
/// Fails with [`HostError::InvalidSetting`] if `runs` is empty, `labels` does not match
/// `runs`, `window` is 0, no run has a finished episode, or no font is found; with
/// [`HostError::BadFile`] if a `monitor.csv` is not in SB3's format; with [`HostError::Io`] if
/// a file cannot be read or the PNG cannot be written. A run without episodes still gets a
/// legend entry, marked `(no episodes)`.
pub fn plot_runs(runs: &[PathBuf], out: &Path, opts: PlotOptions) -> Result<()> {
    if runs.is_empty() {
        return Err(HostError::InvalidSetting("no runs to plot".into()));
    }
    if !opts.labels.is_empty() && opts.labels.len() != runs.len() {
        return Err(HostError::InvalidSetting(format!(
            "{} labels for {} runs; give one label per run or none",
            opts.labels.len(),
            runs.len()
        )));
    }
    if opts.window == 0 {
        return Err(HostError::InvalidSetting(
            "the smoothing window must be at least 1 episode".into(),
        ));
    }

    let mut curves: Vec<(String, Curve)> = Vec::with_capacity(runs.len());
    let mut env_id = None;
    let mut max_t = 0.0f64;
    for (i, run) in runs.iter().enumerate() {
        let file = if run.is_dir() {
            run.join(MONITOR_FILE)
        } else {
            run.clone()
        };
        let label = match opts.labels.get(i) {
            Some(l) => l.clone(),
            None => run_name(run),
        };
        if env_id.is_none() {
            env_id = read_env_id(&file);
        }
        let rows = crate::run::read_monitor_rows(&file)?;
        max_t = rows.iter().fold(max_t, |m, r| m.max(r.2));
        curves.push((label, curve(&rows, opts.x_axis, opts.window)));
    }
    if curves.iter().all(|(_, c)| c.is_empty()) {
        return Err(HostError::InvalidSetting(
            "no finished episodes in any of the runs; nothing to plot".into(),
        ));
    }

    // Wall time in the unit that keeps the numbers readable.
    let (x_scale, x_desc) = match opts.x_axis {
        XAxis::Steps => (1.0, "environment steps".to_string()),
        XAxis::Episodes => (1.0, "episodes".to_string()),
        XAxis::WallTime if max_t < 300.0 => (1.0, "wall time (s)".to_string()),
        XAxis::WallTime if max_t < 3.0 * 3600.0 => (1.0 / 60.0, "wall time (min)".to_string()),
        XAxis::WallTime => (1.0 / 3600.0, "wall time (h)".to_string()),
    };
    for (_, c) in &mut curves {
        for p in c.iter_mut() {
            p.0 *= x_scale;
        }
    }

    let series = if opts.group {
        group_curves(curves)
    } else {
        curves
            .into_iter()
            .map(|(label, line)| Series {
                label,
                line,
                band: None,
            })
            .collect()
    };

    let title = opts.title.clone().or(env_id).unwrap_or_default();
    let y_desc = if opts.window > 1 {
        format!("episode return ({}-episode mean)", opts.window)
    } else {
        "episode return".to_string()
    };
    load_font(opts.font.as_deref())?;
    // The PNG's own I/O errors come back from the plotting library as a debug dump: open the
    // file here first, so that an unwritable `out` is a plain message naming it.
    std::fs::File::create(out).map_err(|e| HostError::io(out, e))?;
    draw(out, &opts, &title, &x_desc, &y_desc, &series)
        .map_err(|e| HostError::io(out, std::io::Error::other(format!("drawing the plot: {e}"))))
}

/// One precomputed line of [`plot_bands`]: a centre line (e.g. the median over seeds) and a
/// band around it (e.g. their minimum and maximum), both with non-decreasing x.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Band {
    /// Legend label.
    pub label: String,
    /// `(x, y)` of the centre line.
    pub line: Vec<(f64, f64)>,
    /// `(x, low, high)` of the band; empty for none.
    pub band: Vec<(f64, f64, f64)>,
}

/// Draw precomputed lines with bands into the PNG `out`, with the look of [`plot_runs`]:
/// `title` above, `x_desc`/`y_desc` on the axes; `opts` gives the size and font (its window,
/// labels, group and x-axis settings do not apply: the numbers are drawn as given).
///
/// Fails with [`HostError::InvalidSetting`] if no font is found, [`HostError::Io`] if the PNG
/// cannot be written.
pub fn plot_bands(
    bands: &[Band],
    out: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    opts: &PlotOptions,
) -> Result<()> {
    let series: Vec<Series> = bands
        .iter()
        .map(|b| Series {
            label: b.label.clone(),
            line: b.line.clone(),
            band: (!b.band.is_empty()).then(|| b.band.clone()),
        })
        .collect();
    load_font(opts.font.as_deref())?;
    std::fs::File::create(out).map_err(|e| HostError::io(out, e))?;
    draw(out, opts, title, x_desc, y_desc, &series)
        .map_err(|e| HostError::io(out, std::io::Error::other(format!("drawing the plot: {e}"))))
}

/// The legend name of a run: its folder's name (the parent's for a `monitor.csv` path).
fn run_name(run: &Path) -> String {
    let dir = if run.is_dir() {
        run
    } else {
        run.parent().unwrap_or(run)
    };
    let abs = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    abs.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run.display().to_string())
}

/// The `env_id` in a monitor file's first line, if readable.
fn read_env_id(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let first = text.lines().next()?.strip_prefix('#')?;
    let header: serde_json::Value = serde_json::from_str(first).ok()?;
    let id = header.get("env_id")?.as_str()?;
    (id != "None").then(|| id.to_string())
}

/// `(x, smoothed return)` per episode, see the [module docs](self).
fn curve(rows: &[(f64, u64, f64)], x_axis: XAxis, window: usize) -> Curve {
    let mut out = Vec::with_capacity(rows.len());
    let mut steps = 0u64;
    let mut sum = 0.0f64;
    for (i, &(r, l, t)) in rows.iter().enumerate() {
        steps += l;
        sum += r;
        if i >= window {
            sum -= rows[i - window].0;
        }
        let k = (i + 1).min(window) as f64;
        let x = match x_axis {
            XAxis::Steps => steps as f64,
            XAxis::WallTime => t,
            XAxis::Episodes => (i + 1) as f64,
        };
        let y = sum / k;
        if x.is_finite() && y.is_finite() {
            out.push((x, y));
        }
    }
    out
}

/// Linear interpolation of a curve with non-decreasing x at `x` (clamped to its ends).
pub(crate) fn interpolate(c: &[(f64, f64)], x: f64) -> f64 {
    let i = c.partition_point(|p| p.0 < x);
    if i == 0 {
        return c[0].1;
    }
    if i == c.len() {
        return c[c.len() - 1].1;
    }
    let (x0, y0) = c[i - 1];
    let (x1, y1) = c[i];
    if x1 > x0 {
        y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    } else {
        y1
    }
}

/// Merge curves with equal labels into mean lines with min–max bands (first-seen order).
fn group_curves(curves: Vec<(String, Curve)>) -> Vec<Series> {
    let mut groups: Vec<(String, Vec<Curve>)> = Vec::new();
    for (label, c) in curves {
        match groups.iter_mut().find(|(l, _)| *l == label) {
            Some((_, members)) => members.push(c),
            None => groups.push((label, vec![c])),
        }
    }
    groups
        .into_iter()
        .map(|(label, members)| {
            let n = members.len();
            let members: Vec<_> = members.into_iter().filter(|c| !c.is_empty()).collect();
            let label = if n == 1 {
                label
            } else if members.len() < 2 {
                format!("{label} (n={} of {n})", members.len())
            } else {
                format!("{label} (n={n}, mean, min–max)")
            };
            if members.len() < 2 {
                return Series {
                    label,
                    line: members.into_iter().next().unwrap_or_default(),
                    band: None,
                };
            }
            let lo = members.iter().map(|c| c[0].0).fold(f64::MIN, f64::max);
            let hi = members
                .iter()
                .map(|c| c[c.len() - 1].0)
                .fold(f64::MAX, f64::min);
            let mut line = Vec::with_capacity(GRID);
            let mut band = Vec::with_capacity(GRID);
            if hi >= lo {
                for g in 0..GRID {
                    let x = lo + (hi - lo) * g as f64 / (GRID - 1) as f64;
                    let ys: Vec<f64> = members.iter().map(|c| interpolate(c, x)).collect();
                    let mean = ys.iter().sum::<f64>() / ys.len() as f64;
                    let min = ys.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    line.push((x, mean));
                    band.push((x, min, max));
                }
            }
            Series {
                label,
                line,
                band: Some(band),
            }
        })
        .collect()
}

/// Font bytes registered so far, by file; each file is read (and leaked, as plotters needs
/// `'static` font data) once per process.
static FONTS: Mutex<Vec<(PathBuf, &'static [u8])>> = Mutex::new(Vec::new());

/// Font files tried when none is given, in order.
const FONT_CANDIDATES: [&str; 9] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Find a font and register it as plotters' `sans-serif` (the family every label uses).
fn load_font(explicit: Option<&Path>) -> Result<()> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => find_font().ok_or_else(|| {
            HostError::InvalidSetting(
                "no font found to draw the plot's text; install one (Debian/Ubuntu: \
                 `apt-get install fonts-dejavu-core`) or name a .ttf file with \
                 $ACKTR_PLOT_FONT"
                    .into(),
            )
        })?,
    };
    let mut fonts = FONTS.lock().unwrap_or_else(|p| p.into_inner());
    let bytes: &'static [u8] = match fonts.iter().find(|(p, _)| *p == path) {
        Some((_, b)) => b,
        None => {
            let data = std::fs::read(&path).map_err(|e| HostError::io(&path, e))?;
            let leaked: &'static [u8] = Box::leak(data.into_boxed_slice());
            fonts.push((path.clone(), leaked));
            leaked
        }
    };
    register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| HostError::BadFile {
        path: path.clone(),
        reason: "not a TrueType/OpenType font".into(),
    })
}

fn find_font() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ACKTR_PLOT_FONT") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = FONT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    {
        return Some(p);
    }
    let out = std::process::Command::new("fc-match")
        .args(["-f", "%{file}", "sans-serif:fontformat=TrueType"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    p.is_file().then_some(p)
}

/// Pad a range by 5% on each side (±1 if it is a single value).
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) || hi < lo {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 1.0, hi + 1.0);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

fn draw(
    out: &Path,
    opts: &PlotOptions,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (mut x_lo, mut x_hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y_lo, mut y_hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        for &(x, y) in &s.line {
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x);
            y_lo = y_lo.min(y);
            y_hi = y_hi.max(y);
        }
        for &(_, lo, hi) in s.band.iter().flatten() {
            y_lo = y_lo.min(lo);
            y_hi = y_hi.max(hi);
        }
    }
    let x_lo = x_lo.min(0.0);
    let (_, x_hi) = padded(x_lo, x_hi);
    let (y_lo, y_hi) = padded(y_lo, y_hi);

    let root = BitMapBackend::new(out, opts.size).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .x_label_formatter(&|x| short_number(*x))
        .y_label_formatter(&|y| short_number(*y))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        if let Some(band) = s.band.as_ref().filter(|b| b.len() > 1) {
            let outline: Vec<(f64, f64)> = band
                .iter()
                .map(|&(x, _, hi)| (x, hi))
                .chain(band.iter().rev().map(|&(x, lo, _)| (x, lo)))
                .collect();
            chart.draw_series(std::iter::once(Polygon::new(
                outline,
                color.mix(0.2).filled(),
            )))?;
        }
        let label = if s.line.is_empty() {
            format!("{} (no episodes)", s.label)
        } else {
            s.label.clone()
        };
        chart
            .draw_series(LineSeries::new(
                thin(&s.line, x_lo, x_hi, opts.size.0 as usize),
                color.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xbb, 0xbb, 0xbb))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Tick labels: `250k`, `1.5M`, `-20`, `0.25`.
/// At most one point per pixel column of `columns` spanning `x_lo..x_hi`: each column's
/// points replaced by their mean `(x̄, ȳ)`. A long run has several episodes per column, and a
/// thick line through thousands of sub-pixel segments is drawn with holes in it.
fn thin(line: &[(f64, f64)], x_lo: f64, x_hi: f64, columns: usize) -> Vec<(f64, f64)> {
    let span = (x_hi - x_lo).max(f64::MIN_POSITIVE);
    let column = |x: f64| ((x - x_lo) / span * columns as f64).floor() as i64;
    let mut out = Vec::with_capacity(line.len().min(columns + 1));
    let mut i = 0;
    while i < line.len() {
        let c = column(line[i].0);
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
        while i < line.len() && column(line[i].0) == c {
            sx += line[i].0;
            sy += line[i].1;
            n += 1.0;
            i += 1;
        }
        out.push((sx / n, sy / n));
    }
    out
}

fn short_number(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if a >= 1e9 {
        format!("{}G", trim(format!("{:.2}", v / 1e9)))
    } else if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        trim(format!("{v:.2}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_and_cumulative_steps() {
        let rows = [
            (1.0, 10, 0.1),
            (3.0, 20, 0.2),
            (5.0, 30, 0.3),
            (7.0, 40, 0.4),
        ];
        let c = curve(&rows, XAxis::Steps, 2);
        assert_eq!(c, [(10.0, 1.0), (30.0, 2.0), (60.0, 4.0), (100.0, 6.0)]);
        let c = curve(&rows, XAxis::Episodes, 1);
        assert_eq!(c, [(1.0, 1.0), (2.0, 3.0), (3.0, 5.0), (4.0, 7.0)]);
    }

    #[test]
    fn groups_average_on_the_common_range() {
        let a = vec![(0.0, 0.0), (10.0, 10.0)];
        let b = vec![(0.0, 2.0), (8.0, 2.0)];
        let s = group_curves(vec![("x".into(), a), ("x".into(), b)]);
        assert_eq!(s.len(), 1);
        let band = s[0].band.as_ref().map(Vec::len);
        assert_eq!(band, Some(GRID));
        let last = s[0].line[GRID - 1];
        assert_eq!(last, (8.0, 5.0));
        assert_eq!(s[0].line[0], (0.0, 1.0));
    }

    #[test]
    fn thinning_keeps_one_mean_point_per_pixel_column() {
        // 10,000 points over 0..1000 into 100 columns: 100 points, each the mean of its 100.
        let line: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64 / 10.0, i as f64)).collect();
        let t = thin(&line, 0.0, 1000.0, 100);
        assert_eq!(t.len(), 100);
        assert!((t[0].0 - 4.95).abs() < 1e-9 && (t[0].1 - 49.5).abs() < 1e-9);
        assert!((t[99].1 - 9949.5).abs() < 1e-9);
        // Sparse lines are left as they are.
        let sparse = vec![(0.0, 1.0), (500.0, 2.0), (999.0, 3.0)];
        assert_eq!(thin(&sparse, 0.0, 1000.0, 100), sparse);
    }

    #[test]
    fn tick_labels() {
        assert_eq!(short_number(250_000.0), "250k");
        assert_eq!(short_number(1_500_000.0), "1.5M");
        assert_eq!(short_number(-20.0), "-20");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(0.0), "0");
    }
}
