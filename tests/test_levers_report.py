"""The speed levers in the report (issue 22): each run's lever values and first-step seconds in the tables, lever
rows in a stable order, summary.md's "Speed levers" pairs with their verdicts, and the GPU's memory as a tune
budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_aggregate import point as matrix_point
from test_aggregate import read_csv, repeat, study, write_table
from zerosweep import records as f
from zerosweep.plan import levers
from zerosweep.plan.matrix import MatrixPoint
from zerosweep.report.study import labels
from zerosweep.report.study import tables as aggregate
from zerosweep.report.summary import answers as summary
from zerosweep.report.summary.answer_phrases import verdict_phrase
from zerosweep.report.tune.recommend import GPU_MEMORY, budget_table, markdown_table, study_budgets
from zerosweep.report.tune.tune_records import run_outcome


def lever_point(stage: int, **values: Any) -> dict[str, Any]:
    """A point dict as the plan writes it: the levers that differ from the base (the workshop's defaults)."""
    p = matrix_point(stage)
    differing = levers.differing(values, {})
    if differing:
        p["levers"] = [[name, value] for name, value in differing]
    return p


def lever_run(p: dict[str, Any], k: int, rate: float, peak: float, first_step: float | None = None) -> dict[str, Any]:
    """Repeat k of a point with levers: its id, label and setup (every lever's effective value) as parse-memory
    writes them from the spec's settings.training."""
    summary = repeat({key: value for key, value in p.items() if key != "levers"}, k, rate, peak)
    matrix = MatrixPoint.from_dict(p)
    summary.update(run_id=f"{matrix.point_id}-r{k}", label=matrix.label, point=p)
    summary["setup"].update(levers.run_values(dict(matrix.levers)))
    summary["metrics"]["first_step_seconds"] = first_step
    return summary


EAGER = [lever_run(lever_point(1), k, rate, 20000 + k, 2.0) for k, rate in enumerate((40.0, 40.6, 39.5), 1)]
COMPILED = [lever_run(lever_point(1, compile=True), k, rate, 18000 + k, 40.0 + k)
            for k, rate in enumerate((80.0, 81.0, 79.5), 1)]
BF16 = [lever_run(lever_point(1, precision="bf16"), k, rate, peak, 2.1)
        for k, (rate, peak) in enumerate(((40.2, 20000), (40.4, 20100), (39.9, 19950)), 1)]
# differs from the eager fp16 row in two levers: no pair
COMPILED_BF16 = [lever_run(lever_point(1, compile=True, precision="bf16"), k, rate, 18000, 41.0)
                 for k, rate in enumerate((82.0, 82.5, 81.5), 1)]


def test_lever_columns_hold_each_runs_effective_values_in_the_csv(tmp_path: Path) -> None:
    header, rows = read_csv(write_table(tmp_path, "levers", "comparison", COMPILED + EAGER))
    assert [name for name in header if name in levers.LEVERS] == list(levers.LEVERS)  # registry order
    by_id = {row["run_id"]: row for row in rows}
    eager, compiled = by_id["z1-offnone-nopin-g1n1"], by_id["z1-offnone-nopin-g1n1-cmp"]
    assert [eager[name] for name in levers.LEVERS] == ["False", "fp16", "deepspeed", "False", "model", "eager"]
    assert [compiled[name] for name in levers.LEVERS] == ["True", "fp16", "deepspeed", "False", "model", "eager"]
    assert float(compiled["first_step_seconds"]) == 42.0 and float(eager["first_step_seconds"]) == 2.0  # medians
    assert compiled["config"] == "ZeRO Stage 1, compiled"
    # read back typed: the levers by the records' dtypes
    frame = aggregate.read_table(tmp_path / "levers.csv")
    assert frame[f.COMPILE].tolist() == [False, True] and frame[f.PRECISION].tolist() == ["fp16", "fp16"]


def test_a_record_from_before_the_levers_reads_as_the_defaults(tmp_path: Path) -> None:
    old = repeat(matrix_point(1), 1, 40.0, 20000)  # setup has precision only, metrics no first step
    _header, (row,) = read_csv(write_table(tmp_path, "old", "comparison", [old]))
    assert [row[name] for name in levers.LEVERS] == ["False", "fp16", "deepspeed", "False", "model", "eager"]
    assert row["first_step_seconds"] == ""


def test_first_step_shows_in_markdown_only_when_a_row_is_compiled() -> None:
    label = labels.label(f.FIRST_STEP_SECONDS, "comparison")
    assert label == "First step (s)"
    eager_only = aggregate.markdown(aggregate.build_table(study("e", "comparison", EAGER + BF16), EAGER + BF16))
    assert label not in eager_only.split("\n\n")[2]  # the table itself
    assert "First step (s)" in eager_only  # ... but the CSV pointer names the column
    runs = EAGER + COMPILED
    text = aggregate.markdown(aggregate.build_table(study("c", "comparison", runs), runs))
    header = next(line for line in text.splitlines() if line.startswith("| DeepSpeed Config"))
    cells = [cell.strip() for cell in header.strip("|").split("|")]
    assert cells[cells.index("N") + 1] == label
    compiled_row = next(line for line in text.splitlines() if line.startswith("| ZeRO Stage 1, compiled |"))
    assert "| 3 | 42.00 |" in compiled_row
    pointer = next(line for line in text.splitlines() if line.startswith("`c.csv` has every field"))
    assert label not in pointer  # shown, so not listed as CSV-only
    assert any(line.startswith("- First step (s): seconds of optimizer step 1") for line in text.splitlines())


def test_lever_rows_sort_after_their_point_in_registry_and_value_order() -> None:
    runs = COMPILED_BF16 + BF16 + COMPILED + EAGER + [repeat(matrix_point(2), 1, 30.0, 15000)]
    table = aggregate.build_table(study("order", "comparison", runs), runs[::-1])
    # compile first (not compiled before compiled), then precision (fp16 before bf16); ZeRO-2 after every ZeRO-1 row
    assert [row[f.RUN_ID] for row in table.rows] == [
        "z1-offnone-nopin-g1n1", "z1-offnone-nopin-g1n1-bf16", "z1-offnone-nopin-g1n1-cmp",
        "z1-offnone-nopin-g1n1-cmp-bf16", "z2-offnone-nopin-g1n1"]


def built(tmp_path: Path, runs: list[dict[str, Any]], name: str = "speed") -> list[summary.Built]:
    return summary.load_tables([write_table(tmp_path, name, "comparison", runs), tmp_path / f"{name}.md"])


def test_speed_levers_section_states_each_one_lever_pair_with_its_verdict(tmp_path: Path) -> None:
    tables = built(tmp_path, EAGER + COMPILED + BF16 + COMPILED_BF16)
    sentences = summary.speed_levers(tables)
    # compile: eager -> compiled, bf16 -> compiled bf16; precision: fp16 -> bf16, compiled fp16 -> compiled bf16.
    # Eager fp16 vs compiled bf16 differ in two levers, compiled fp16 vs eager bf16 too: no sentence.
    assert len(sentences) == 4, sentences
    compiled = sentences[0]
    assert compiled.startswith("*Title of speed*, compiled vs not compiled (ZeRO Stage 1): steady throughput went "
                               "from "), compiled
    rows = {row[f.RUN_ID]: row for row in tables[0].rows}
    verdict = summary.pair_verdict(rows["z1-offnone-nopin-g1n1"], rows["z1-offnone-nopin-g1n1-cmp"], tables)
    assert verdict.table == "speed"  # eager fp16 is the table's reference: its own verdict is quoted
    assert verdict.throughput is not None and verdict.throughput.verdict == "faster"
    assert verdict.memory is not None and verdict.memory.verdict == "less memory"
    for found, what in ((verdict.throughput, "throughput"), (verdict.memory, "memory")):
        phrase = verdict_phrase(found, what)
        assert phrase is not None and phrase in compiled, (phrase, compiled)
    assert "**faster**" in compiled and "**less memory**" in compiled
    assert "peak GPU memory from 20,002 MiB to 18,002 MiB (-10.0 %)" in compiled
    assert compiled.endswith("First optimizer step: 2.0 s -> 42.0 s.")
    bf16 = next(s for s in sentences if s.startswith("*Title of speed*, bf16 vs fp16 (ZeRO Stage 1):"))
    assert "throughput within the noise" in bf16 and "memory within the noise" in bf16 and "**" not in bf16, bf16
    assert any(s.startswith("*Title of speed*, compiled vs not compiled (ZeRO Stage 1, bf16):") for s in sentences)
    # neither row of this pair is the table's reference: pair_verdict tests it from the runs (Welch)
    compiled_bf16 = next(s for s in sentences if s.startswith("*Title of speed*, bf16 vs fp16 (ZeRO Stage 1, compiled):"))
    tested = summary.pair_verdict(rows["z1-offnone-nopin-g1n1-cmp"], rows["z1-offnone-nopin-g1n1-cmp-bf16"], tables)
    assert tested.table is None and tested.throughput is not None and tested.throughput.verdict == "faster"
    assert (verdict_phrase(tested.throughput, "throughput") or "-") in compiled_bf16
    assert "Welch t on log run medians" in compiled_bf16, compiled_bf16
    text = summary.render(tables)
    assert "## Speed levers" in text and f"- {compiled}" in text


def test_no_speed_levers_section_without_a_one_lever_pair(tmp_path: Path) -> None:
    tables = built(tmp_path, EAGER + COMPILED_BF16)  # two levers apart
    assert summary.speed_levers(tables) == []
    assert "## Speed levers" not in summary.render(tables)


def test_a_pair_in_two_tables_is_stated_once(tmp_path: Path) -> None:
    tables = built(tmp_path, EAGER + COMPILED, "one") + built(tmp_path, EAGER + COMPILED, "two")
    assert len(summary.speed_levers(tables)) == 1


# --- tune: the GPU's own memory as a budget -------------------------------------------------------------


def tune_run(run_id: str, peak_gib: float, speed: float, total_mib: float | None) -> dict[str, Any]:
    return {"run_id": run_id, "label": run_id, "status": "ok", "micro_batch": 1, "gradient_accumulation_steps": 1,
            "peak_mib": peak_gib * 1024, "samples_per_second": speed, "samples_per_second_low": None,
            "samples_per_second_high": None, "tflops_per_gpu": None, "mfu": None, "gpu_total_mib": total_mib}


H200_MIB = 143771.0  # nvidia-smi memory.total of an H200


def test_the_gpus_memory_is_a_budget_when_larger_than_the_configured_ones() -> None:
    runs = [tune_run("mid", 60, 9, H200_MIB), tune_run("z1-offnone-nopin-g1n1-b16-cmp", 120, 30, H200_MIB)]
    sources = study_budgets([16, 80], runs)
    assert sources == {16.0: "", 80.0: "", 140.4: GPU_MEMORY}
    table = budget_table(runs, list(sources), sources).set_index("Budget (GiB)")
    assert table.loc[80.0, "Run"] == "mid"
    assert table.loc[140.4, "Run"] == "z1-offnone-nopin-g1n1-b16-cmp"  # only the GPU's whole memory holds it
    assert table.loc[140.4, "Budget"] == "140.4 GiB (the GPU's memory)" and table.loc[16.0, "Budget"] == "16 GiB"
    shown = markdown_table(table.reset_index())
    assert "140.4 GiB (the GPU's memory)" in shown and "Budget (GiB)" not in shown
    # a configured budget as large as the GPU: nothing added; CPU ranks (no GPU record): nothing added
    assert study_budgets([16, 160], runs) == {16.0: "", 160.0: ""}
    assert study_budgets([16, 80], [tune_run("cpu", 1, 1, None)]) == {16.0: "", 80.0: ""}


def test_a_probes_outcome_records_its_smallest_gpus_memory() -> None:
    run = lever_run(lever_point(1, compile=True), 1, 40.0, 20000)
    run["setup"].update(per_device_batch_size=4, gradient_accumulation_steps=4)
    run["gpu"]["gpus"] = [{"total_mib": H200_MIB}, {"total_mib": 81559.0}]
    outcome = run_outcome(run)
    assert outcome["gpu_total_mib"] == 81559.0
    assert outcome["point_id"] == "z1-offnone-nopin-g1n1-cmp" and outcome["label"] == "ZeRO Stage 1, compiled"


@pytest.mark.parametrize("name", list(levers.LEVERS))
def test_every_lever_is_a_record_field_with_a_label_and_a_dtype(name: str) -> None:
    assert name in vars(f).values() and name in labels.LABELS
    assert f.table_dtypes([name])[name] == ("boolean" if isinstance(levers.LEVERS[name].default, bool) else "string")


def test_parse_memory_records_every_levers_value_and_the_first_step() -> None:
    from zerosweep.report.run_summary import memory

    setup = memory._setup({"training": {"compile": True, "optimizer": "torch_fused"}}, None)
    assert {name: setup[name] for name in levers.LEVERS} == {  # type: ignore[literal-required]
        "compile": True, "precision": "fp16", "optimizer": "torch_fused", "gradient_checkpointing": False,
        "loss": "model", "attention": "eager"}
    warnings: list[str] = []
    metrics = memory.extract_metrics({"status": "ok", "first_step_seconds": 38.5}, {}, "ok", warnings)
    assert metrics["first_step_seconds"] == 38.5
    assert not any("first_step_seconds" in warning for warning in warnings)  # optional: older records lack it
