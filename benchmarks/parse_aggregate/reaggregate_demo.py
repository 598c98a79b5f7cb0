"""Re-parse and re-aggregate a finished CPU demo with this checkout's report layer and compare with its tables.

The demo (`snakemake all --workflow-profile profiles/cpu-demo`) is run once with the code before the report
split (commit 987d834); this script parses the same run records again and rebuilds the same studies, then
compares every table cell (old CSV by display header, new CSV by field id), the Markdown rows (the old "MB"
headers read as MiB) and summary.md.

    python benchmarks/parse_aggregate/reaggregate_demo.py OLD_CHECKOUT OUT_DIR
"""

from __future__ import annotations

import csv
import difflib
import re
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from zerosweep.jsonio import write_json
from zerosweep.plan.matrix import build_plan
from zerosweep.report.run_summary import memory
from zerosweep.report.study import labels, tables
from zerosweep.report.summary import answers

# Old headers that no label maps to any more.
OLD_HEADERS = {
    "CPU Peak Usage (MB)": "cpu_peak_mib",
    "CPU Average Usage (MB)": "cpu_average_mib",
    "CPU Mode Usage (MB)": "cpu_modes_mib",
    "World Size": "world_size",
}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return base


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def markdown_rows(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8").replace("(MB)", "(MiB)")
    return [re.sub(r"\s+", " ", line) for line in text.splitlines() if line.startswith("|") and set(line) - set("|-: ")]


def main() -> int:
    old, new = Path(sys.argv[1]), Path(sys.argv[2])
    config = merge(
        yaml.safe_load((old / "workflow_config.yaml").read_text()),
        yaml.safe_load((old / "profiles/cpu-demo/demo_overrides.yaml").read_text()),
    )
    plan = build_plan(config)
    for run_dir in sorted((old / "results/runs").iterdir()):
        write_json(new / "runs" / run_dir.name / "summary.json", memory.summarise_run(run_dir), indent=None)
    built = []
    for name in plan.build:
        study = plan.studies[name]
        spec = {"name": study.name, "title": study.title, "table": study.table, "scaling_axis": study.scaling_axis,
                "peak_tflops": config["runtime"].get("peak_tflops"),
                "runs": {run: plan.runs[run].to_dict() for run in study.run_ids}}  # fmt: skip
        records = tables.load_summaries([new / "runs" / run / "summary.json" for run in study.run_ids])
        table = tables.build_table(spec, records)
        tables.write_csv(table, new / "tables" / f"{name}.csv")
        tables.write_markdown(table, new / "tables" / f"{name}.md")
        built += [new / "tables" / f"{name}.csv", new / "tables" / f"{name}.md"]
    (new / "summary.md").write_text(answers.render(answers.load_tables(built)), encoding="utf-8")

    field_of = dict(OLD_HEADERS)
    for kind in tables.TABLE_KINDS:
        for field in labels.LABELS:
            field_of.setdefault(labels.label(field, kind), field)
    cells, differences = 0, []
    for name in plan.build:
        old_rows, new_rows = read_rows(old / "results/tables" / f"{name}.csv"), read_rows(new / "tables" / f"{name}.csv")
        if len(old_rows) != len(new_rows):
            differences.append(f"{name}: {len(old_rows)} rows before, {len(new_rows)} after")
        for before, after in zip(old_rows, new_rows):
            for header, value in before.items():
                cells += 1
                if value.lower() != after[field_of[header]].lower():  # booleans: true -> True
                    differences.append(f"{name} {before['Run']} {header}: {value!r} -> {after[field_of[header]]!r}")
        if markdown_rows(old / "results/tables" / f"{name}.md") != markdown_rows(new / "tables" / f"{name}.md"):
            differences.append(f"{name}: Markdown rows differ")
    print(f"{cells} CSV cells compared over {len(plan.build)} tables; {len(differences)} differ")
    print("\n".join(differences))
    old_summary, new_summary = (old / "results/summary.md").read_text(), (new / "summary.md").read_text()
    print("summary.md identical" if old_summary == new_summary else "summary.md differs:")
    print("\n".join(difflib.unified_diff(old_summary.splitlines(), new_summary.splitlines(), lineterm="", n=0)))
    return 1 if differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
