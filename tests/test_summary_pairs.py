"""summary.md's verdict on a pair of rows (issue 21): a row's verdict holds against its own table's reference
only; a pair spanning two tables, or two rows of which neither is the reference, gets its own test from the runs."""

from __future__ import annotations

from pathlib import Path

from test_aggregate import point, repeat, write_table
from zerosweep import records as f
from zerosweep.report.summary import answers as summary
from zerosweep.report.summary.answer_phrases import verdict_phrase

# The reproduction: ZeRO-2 alone in one study; ZeRO-1 and ZeRO-2 with offload in another, where ZeRO-2 + offload
# is 50 % faster than its reference ZeRO-1 + offload but far slower than ZeRO-2 without offload.
ZERO2 = [repeat(point(2), k, rate, peak) for k, (rate, peak) in enumerate([(40.0, 20000), (40.6, 20010),
                                                                           (39.5, 19990)], 1)]
OFFLOAD1 = [repeat(point(1, "cpu"), k, rate, peak) for k, (rate, peak) in enumerate([(10.0, 12000), (10.1, 12010),
                                                                                      (9.9, 11990)], 1)]
OFFLOAD2 = [repeat(point(2, "cpu"), k, rate, peak) for k, (rate, peak) in enumerate([(15.0, 10000), (15.2, 10010),
                                                                                      (14.8, 9990)], 1)]


def two_studies(tmp_path: Path) -> list[summary.Built]:
    paths = []
    for name, runs in (("zero2", ZERO2), ("zero_offload", OFFLOAD1 + OFFLOAD2)):
        paths += [write_table(tmp_path, name, "comparison", runs), tmp_path / f"{name}.md"]
    return summary.load_tables(paths)


def offload_sentence(tables: list[summary.Built]) -> str:
    return next(line for line in summary.offload_effect(tables) if line.startswith("ZeRO Stage 2 on 1 GPU"))


def test_a_pair_across_two_tables_is_tested_from_its_runs_not_by_a_row_verdict(tmp_path: Path) -> None:
    tables = two_studies(tmp_path)
    sentence = offload_sentence(tables)
    # The offloaded row's verdict in its own table is "faster" (+50 % against ZeRO-1 + offload); quoting it for
    # the pair ZeRO-2 -> ZeRO-2 + offload contradicted the -62.5 % beside it.
    assert "**faster**" not in sentence and "**slower**" in sentence, sentence
    assert "**less memory**" in sentence, sentence
    (own,) = [row for table in tables for row in table.rows if row[f.RUN_ID] == "z2-offcpu-nopin-g1n1"]
    assert own[f.THROUGHPUT_VERDICT] == "faster"  # the table's verdict, against its own reference
    before = next(row for table in tables for row in table.rows if row[f.RUN_ID] == "z2-offnone-nopin-g1n1")
    verdict = summary.pair_verdict(before, own, tables)
    assert verdict.table is None  # no table holds both rows with ZeRO-2 as its reference
    assert verdict.throughput is not None and verdict.throughput.verdict == "slower"
    assert verdict.throughput.ratio_high is not None and verdict.throughput.ratio_high < 0.5
    assert verdict.memory is not None and verdict.memory.verdict == "less memory"
    # The sentence quotes pair_verdict's verdicts, each with its interval's ends and its test.
    for found, what in ((verdict.throughput, "throughput"), (verdict.memory, "memory")):
        phrase = verdict_phrase(found, what)
        assert phrase is not None and phrase in sentence, (phrase, sentence)
    assert "**slower**: -62.5 % [-6" in sentence and "Welch t on log run medians" in sentence, sentence
    overall = summary.offload_effect(tables)[-1]
    assert "of 1 pair(s) tested" in overall and "slower beyond the noise in 1" in overall, overall


def test_a_pair_within_one_table_uses_the_tables_verdict_only_against_its_reference(tmp_path: Path) -> None:
    # One study of the three points: the order (stage first) makes ZeRO-1 + offload the reference, so the pair
    # ZeRO-2 -> ZeRO-2 + offload has no table verdict and is tested from its runs, though both rows are in it.
    paths = [write_table(tmp_path, "all", "comparison", OFFLOAD1 + ZERO2 + OFFLOAD2), tmp_path / "all.md"]
    tables = summary.load_tables(paths)
    rows = {row[f.RUN_ID]: row for row in tables[0].rows}
    assert rows["z1-offcpu-nopin-g1n1"][f.THROUGHPUT_VERDICT] == "reference"
    pair = summary.pair_verdict(rows["z2-offnone-nopin-g1n1"], rows["z2-offcpu-nopin-g1n1"], tables)
    assert pair.table is None and pair.throughput is not None and pair.throughput.verdict == "slower"
    within = summary.pair_verdict(rows["z1-offcpu-nopin-g1n1"], rows["z2-offcpu-nopin-g1n1"], tables)
    assert within.table == "all" and within.throughput is not None
    assert within.throughput.verdict == "faster"
    assert within.throughput.ratio == rows["z2-offcpu-nopin-g1n1"][f.THROUGHPUT_RATIO]


def test_single_runs_across_tables_are_untested(tmp_path: Path) -> None:
    paths = []
    for name, runs in (("zero2", ZERO2[:1]), ("zero_offload", OFFLOAD1[:1] + OFFLOAD2[:1])):
        paths += [write_table(tmp_path, name, "comparison", runs), tmp_path / f"{name}.md"]
    sentence = offload_sentence(summary.load_tables(paths))
    assert "**" not in sentence and "throughput difference untested" in sentence, sentence


def test_a_point_in_two_tables_gets_the_verdict_of_the_table_where_its_pair_has_the_reference(tmp_path: Path) -> None:
    # As shipped: ZeRO-2 + offload unpinned is a row of zero_offload (against ZeRO-1 + offload) and the reference
    # of pin_memory; the pinned pair takes pin_memory's verdict, whichever table's copy of the row comes first.
    pinned = [repeat(point(2, "cpu", True), k, rate, peak) for k, (rate, peak) in enumerate([(18.0, 10500),
                                                                                          (18.3, 10510),
                                                                                          (17.8, 10490)], 1)]
    paths = []
    for name, runs in (("pin_memory", OFFLOAD2 + pinned), ("a_zero_offload", OFFLOAD1 + OFFLOAD2)):
        paths += [write_table(tmp_path, name, "comparison", runs), tmp_path / f"{name}.md"]
    tables = summary.load_tables(paths)
    assert [table.study for table in tables] == ["a_zero_offload", "pin_memory"]
    plain = next(row for row in tables[0].rows if row[f.RUN_ID] == "z2-offcpu-nopin-g1n1")
    assert plain[f.THROUGHPUT_VERDICT] == "faster"  # zero_offload's copy: not a reference
    pin = next(row for row in tables[1].rows if row[f.RUN_ID] == "z2-offcpu-pin-g1n1")
    verdict = summary.pair_verdict(plain, pin, tables)
    assert verdict.table == "pin_memory"
    assert verdict.throughput is not None and verdict.throughput.verdict == "faster"
    assert verdict.throughput.ratio == pin[f.THROUGHPUT_RATIO]
    (sentence,) = summary.pin_memory_effect(tables)
    assert "**faster**: +20.2 % [" in sentence and "table `pin_memory`" in sentence, sentence


def test_run_values_reads_the_run_level_cells() -> None:
    assert summary.run_values("40.1 39.5 4.06e+04") == [40.1, 39.5, 40600.0]
    assert summary.run_values(12.5) == [12.5]
    assert summary.run_values(None) is None and summary.run_values("") is None


def test_a_pair_across_tables_with_peaks_from_different_monitors_is_not_tested(tmp_path: Path) -> None:
    # ZeRO-2's study has no NVML record, so its table compares nvidia-smi peaks; the offload study's compares
    # NVML peaks: a Welch test between the two would test the monitors, not the configurations
    without_nvml = [{**run, "nvml": None} for run in ZERO2]
    paths = []
    for name, runs in (("zero2", without_nvml), ("zero_offload", OFFLOAD1 + OFFLOAD2)):
        paths += [write_table(tmp_path, name, "comparison", runs), tmp_path / f"{name}.md"]
    tables = summary.load_tables(paths)
    rows = {row[f.RUN_ID]: row for table in tables for row in table.rows}
    before, after = rows["z2-offnone-nopin-g1n1"], rows["z2-offcpu-nopin-g1n1"]
    assert before[f.RUN_PEAK_SOURCE] != after[f.RUN_PEAK_SOURCE]
    verdict = summary.pair_verdict(before, after, tables)
    assert verdict.memory is not None and verdict.memory.verdict == "untested" and verdict.memory.ratio is None
    assert "measured differently" in verdict.memory.test
    assert verdict.throughput is not None and verdict.throughput.verdict == "slower"  # same estimator: tested
    assert before[f.RUN_SAMPLES_ESTIMATOR] == after[f.RUN_SAMPLES_ESTIMATOR] == "median step"
