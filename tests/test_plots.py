"""plots and timeline: every figure comes out as a non-empty PNG and SVG, OOM rows and missing logs included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_aggregate import BASELINE, OFFLOAD, SCALING, STAGES, make_summary, point, study
from zerosweep import cli
from zerosweep.report.run_summary.memory import summarise_run
from zerosweep.report.study import plots

FIXTURES = Path(__file__).parent / "fixtures"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_figure(png: Path, svg: Path) -> None:
    assert png.read_bytes().startswith(PNG_SIGNATURE) and png.stat().st_size > 10_000
    text = svg.read_text()
    assert "<svg" in text and text.rstrip().endswith("</svg>") and len(text) > 10_000


@pytest.mark.parametrize(
    ("kind", "runs", "axis", "names"),
    [
        ("comparison", STAGES + OFFLOAD, None, ["memory", "throughput"]),
        ("scaling", SCALING, "gpus_per_node", ["memory", "scaling"]),
        ("baseline", BASELINE, None, ["eval_loss", "memory", "throughput"]),
    ],
)
def test_study_plots(tmp_path: Path, kind: str, runs: list, axis: str | None, names: list[str]) -> None:
    paths = []
    for i, summary in enumerate(runs):
        path = tmp_path / f"summary{i}.json"
        path.write_text(json.dumps(summary))
        paths.append(str(path))
    out = tmp_path / "plots"
    spec = json.dumps(study(kind, kind, runs, axis))
    assert cli.main(["plots", "--study-json", spec, "--out-dir", str(out), *paths]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.{ext}" for n in names for ext in ("png", "svg"))
    for name in names:
        assert_figure(out / f"{name}.png", out / f"{name}.svg")


def test_study_plots_all_oom(tmp_path: Path) -> None:
    runs = [OFFLOAD[2]]
    files = plots.study_plots(study("oom", "comparison", runs), runs, tmp_path)
    assert {p.name for p in files} == {"memory.png", "memory.svg", "throughput.png", "throughput.svg"}


def test_study_plots_with_an_unusable_run(tmp_path: Path) -> None:
    runs = [STAGES[0], make_summary(point(1), rate=11.0, unusable="its monitor logs hold no valid sample")]
    files = plots.study_plots(study("unusable", "comparison", runs), runs, tmp_path)
    assert {p.name for p in files} == {"memory.png", "memory.svg", "throughput.png", "throughput.svg"}
    assert "UNUSABLE" in (tmp_path / "memory.svg").read_text()  # the row's bar says why it is empty


@pytest.mark.parametrize("name", ["real_h100_run", "handmade_multinode_run", "handmade_oom_run"])
def test_timeline(tmp_path: Path, name: str) -> None:
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    (run / "summary.json").write_text(json.dumps(summarise_run(run)))
    png, svg = tmp_path / "t.png", tmp_path / "t.svg"
    assert cli.main(["timeline", "--run-dir", str(run), "--out-png", str(png), "--out-svg", str(svg)]) == 0
    assert_figure(png, svg)


def test_timeline_series_from_logs() -> None:
    series = plots.timeline_series(FIXTURES / "handmade_multinode_run")
    assert [label for label, _t, _v in series["nvidia-smi"]] == [
        "nodeA GPU 0", "nodeA GPU 1", "nodeB GPU 0", "nodeB GPU 1",
    ]  # fmt: skip
    assert [label for label, _t, _v in series["cpu"]] == ["nodeA", "nodeB"]
    _label, times, used = series["nvidia-smi"][0]
    assert times[0] == 0.0 and times[-1] == 35.0 and used.max() == 12000
    _label, times, used = series["nvml"][3]
    assert len(times) == 800 and used.max() == 12740.5  # under the binning threshold: every sample kept


def test_timeline_series_from_energy_logs() -> None:
    """The NVML sampler's log with its energy and utilisation columns draws like the older one (the timeline
    read it with the older header and failed on every GPU run of the H100's energy study)."""
    series = plots.timeline_series(FIXTURES / "handmade_energy" / "run")
    assert [label for label, _t, _v in series["nvml"]] == ["nodeA GPU 0", "nodeB GPU 1"]
    assert all(used.max() > 0 for _label, _t, used in series["nvml"])


def test_timeline_without_logs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "handmade_oom_run", run)
    shutil.rmtree(run / "monitor")
    png, svg = tmp_path / "t.png", tmp_path / "t.svg"
    assert plots.timeline_series(run) == {"nvidia-smi": [], "nvml": [], "cpu": []}
    plots.plot_timeline(run, png, svg)  # no summary.json, no logs: still a figure, which says so
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    assert "<svg" in svg.read_text()


def test_binned_max_keeps_the_peak() -> None:
    import numpy as np

    times = np.arange(100_000) * 0.05
    values = np.zeros(100_000)
    values[54_321] = 9999.0
    _times, binned = plots._binned_max(times, values)
    assert len(binned) == plots.MAX_LINE_POINTS and binned.max() == 9999.0


def test_throughput_bars_draw_the_rows_interval_as_error_bars(tmp_path: Path) -> None:
    from test_aggregate import FASTER_RUNS, REFERENCE_RUNS
    from zerosweep.report.study.tables import build_table

    runs = REFERENCE_RUNS + FASTER_RUNS
    rows = build_table(study("rep", "comparison", runs), runs).rows
    below, above = plots.error_bars(rows, "steady_samples_per_second")
    for row, down, up in zip(rows, below, above):
        assert down == pytest.approx(row["steady_samples_per_second"] - row["steady_samples_per_second_low"])
        assert up == pytest.approx(row["steady_samples_per_second_high"] - row["steady_samples_per_second"])
        assert down > 0 and up > 0
    assert plots.error_bars(rows, "train_samples_per_second") is None  # no interval: no error bar
    older = build_table(study("s", "comparison", STAGES), STAGES).rows  # no steps.csv: no interval
    assert plots.error_bars(older, "steady_samples_per_second") is None
    files = plots.study_plots(study("rep", "comparison", runs), runs, tmp_path)
    assert_figure(tmp_path / "throughput.png", tmp_path / "throughput.svg")
    assert len(files) == 4


def test_scaling_plots_say_where_nodes_were_emulated(tmp_path: Path) -> None:
    runs = [SCALING[0], {**SCALING[1], "emulated_nodes": True}]
    plots.study_plots(study("weak", "scaling", runs, "gpus_per_node"), runs, tmp_path)
    assert "emulated on one host" in (tmp_path / "scaling.svg").read_text()
    assert "emulated on one host" in (tmp_path / "memory.svg").read_text()
    plain = tmp_path / "plain"
    plots.study_plots(study("weak", "scaling", SCALING[:2], "gpus_per_node"), SCALING[:2], plain)
    assert "emulated" not in (plain / "scaling.svg").read_text()


def test_bar_labels_and_error_bars_use_the_intervals_ends(tmp_path: Path) -> None:
    from test_aggregate import FASTER_RUNS, REFERENCE_RUNS
    from zerosweep.report.study.tables import build_table

    runs = REFERENCE_RUNS + FASTER_RUNS
    rows = build_table(study("rep", "comparison", runs), runs).rows
    row = rows[1]
    low, mid, high = (row[f"steady_samples_per_second{end}"] for end in ("_low", "", "_high"))
    assert plots.bar_label(row, "steady_samples_per_second", "{:.1f}") == f"{mid:.1f}\n[{low:.1f}, {high:.1f}]"
    assert plots.bar_label(row, "train_samples_per_second", "{:.1f}") == f"{row['train_samples_per_second']:.1f}"
    plots.study_plots(study("rep", "comparison", runs), runs, tmp_path)
    svg = (tmp_path / "throughput.svg").read_text()
    assert f"[{low:.1f}, {high:.1f}]" in svg and "±" not in svg  # matplotlib keeps each text as a comment


def test_efficiency_error_bars_are_the_interval_in_percent() -> None:
    rows = [{"steady_weak_scaling_efficiency": 0.9, "steady_weak_scaling_efficiency_low": 0.8,
             "steady_weak_scaling_efficiency_high": 0.95},
            {"steady_weak_scaling_efficiency": 1.0, "steady_weak_scaling_efficiency_low": None,
             "steady_weak_scaling_efficiency_high": None}]
    below, above = plots.error_bars(rows, "steady_weak_scaling_efficiency", scale=100.0)
    assert below == pytest.approx([10.0, 0.0]) and above == pytest.approx([5.0, 0.0])
    assert plots.error_bars(rows[1:], "steady_weak_scaling_efficiency", scale=100.0) is None


def test_scaling_plot_with_repeats_draws_the_efficiency_interval(tmp_path: Path) -> None:
    from test_aggregate import repeat

    points = [point(2, "cpu", True, gpn=g) for g in (1, 4)]
    runs = [repeat(p, k, rate, 10000.0) for p, rates in zip(points, ((40.0, 40.4, 39.6), (150.0, 156.0, 160.0)))
            for k, rate in enumerate(rates, 1)]
    plots.study_plots(study("weak", "scaling", runs, "gpus_per_node"), runs, tmp_path)
    assert_figure(tmp_path / "scaling.png", tmp_path / "scaling.svg")
    rows = plots.aggregate.build_table(study("weak", "scaling", runs, "gpus_per_node"), runs).rows
    below, above = plots.error_bars(rows, "steady_weak_scaling_efficiency", scale=100.0)
    assert below[0] == above[0] == 0.0 and below[1] > 0 and above[1] > 0  # the reference has no interval
