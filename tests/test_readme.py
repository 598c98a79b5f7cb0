"""The READMEs' commands run as written: every `snakemake ...` line of their code blocks is dry-run in a fresh
copy of the workflow (SLURM ones too: a dry run submits nothing), the files they name exist, and the counts the
text states are the dry run's. Also: the rule graph script draws every rule."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, run_snakemake
from test_workflow import job_counts

sys.path.insert(0, str(REPO / "tests" / "slurm"))

from workflow import copy_workflow

READMES = [REPO / "README.md", *sorted((REPO / "benchmarks").glob("**/README.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# a YAML block that names its own file and command in its first comment: "# <file>: snakemake ..."
YAML_HEADER = re.compile(r"\A# (\S+\.yaml): (snakemake .*?)(?=^[^#]|\Z)", re.MULTILINE | re.DOTALL)
PATH_OPTIONS = {"--workflow-profile", "--profile", "--configfile", "--configfiles"}


@dataclass(frozen=True)
class Command:
    readme: str
    argv: tuple[str, ...]
    files: tuple[tuple[str, str], ...] = ()  # (name, text) the block defines, written beside the workflow first

    def __str__(self) -> str:
        return f"{self.readme}: {shlex.join(self.argv)}"


def readme_commands(readme: Path) -> list[Command]:
    name = str(readme.relative_to(REPO))
    commands = []
    for language, body in FENCE.findall(readme.read_text(encoding="utf-8")):
        if language == "yaml":
            header = YAML_HEADER.match(body)
            if header:
                text = " ".join(line.lstrip("#").strip() for line in header.group(2).splitlines())
                argv = tuple(shlex.split(text.replace("\\ ", " ")))
                commands.append(Command(name, argv, ((header.group(1), body),)))
            continue
        for line in body.replace("\\\n", " ").splitlines():
            argv = tuple(shlex.split(line, comments=True))
            if argv and argv[0] == "snakemake":
                commands.append(Command(name, argv))
    return commands


COMMANDS = [command for readme in READMES for command in readme_commands(readme)]


def test_the_readme_commands_are_found() -> None:
    # the README's cluster, SLURM and tune sections, and the tune example's YAML block
    readme = [command for command in COMMANDS if command.readme == "README.md"]
    assert len(readme) >= 8, [str(command) for command in readme]
    assert any(command.files for command in readme)
    assert any("--executor" in command.argv for command in readme)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workflow as a fresh clone has it (no results/)."""
    path = tmp_path_factory.mktemp("readme")
    copy_workflow(path)
    (path / "workflow_config.yaml").write_bytes((REPO / "workflow_config.yaml").read_bytes())
    return path


def _path_arguments(argv: tuple[str, ...]) -> list[tuple[str, str]]:
    """(option, path) for the options that name a file or directory (--configfile takes several)."""
    paths: list[tuple[str, str]] = []
    option: str | None = None
    for arg in argv[1:]:
        if arg.startswith("-"):
            option, _, value = arg.partition("=")
            if value and option in PATH_OPTIONS:
                paths.append((option, value))
        elif option in PATH_OPTIONS:
            paths.append((option, arg))
            if option not in ("--configfile", "--configfiles"):
                option = None
    return paths


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_readme_command_dry_runs(command: Command, checkout: Path) -> None:
    for name, text in command.files:
        (checkout / name).write_text(text, encoding="utf-8")
    # Snakemake drops a workflow profile that does not exist without a word, and the run goes on without it
    missing = [path for _, path in _path_arguments(command.argv) if not (checkout / path).exists()]
    assert not missing, f"{command}: no such file or directory {missing}"
    args = command.argv[1:]
    if "--report" in args:
        # a report is built from finished results: in a fresh clone it can only fail for lack of them
        result = run_snakemake(*args, cwd=checkout)
        assert "marked for report but does not exist" in result.stdout + result.stderr, result.stderr[-2000:]
        return
    result = run_snakemake(*args, "-n", cwd=checkout)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    for option, path in _path_arguments(command.argv):
        if option == "--workflow-profile":
            assert f"Using workflow specific profile {path}" in result.stdout + result.stderr, command


STATED_JOBS = re.compile(r"\((\d+) runs, (\d+) jobs[;)]")  # "(21 runs, 81 jobs)", "(21 runs, 81 jobs; ...)"


def test_stated_job_counts_are_the_dry_runs(checkout: Path) -> None:
    stated = [(readme, match) for readme in READMES for match in STATED_JOBS.findall(readme.read_text("utf-8"))]
    assert stated, "no '(N runs, M jobs)' in the READMEs"
    result = run_snakemake("-n", cwd=checkout)
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout + result.stderr)
    for readme, (runs, jobs) in stated:
        assert (int(runs), int(jobs)) == (counts["train"], counts["total"]), (readme, counts)


def test_rule_graph_draws_every_rule(tmp_path: Path) -> None:
    rules = {name for path in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]
             for name in re.findall(r"^(?:rule|checkpoint) (\w+):", path.read_text(encoding="utf-8"), re.MULTILINE)}
    script = (REPO / "scripts" / "rulegraph.sh").read_text(encoding="utf-8")
    invocation = re.search(r'"\$python" -m snakemake (.*?) >', script)
    assert invocation, "scripts/rulegraph.sh runs snakemake --rulegraph"
    argv = shlex.split(invocation.group(1))
    result = run_snakemake(*argv)
    assert result.returncode == 0, result.stderr
    drawn = set(re.findall(r'label = "(\w+)"', result.stdout))
    assert drawn == rules - {"matrix"}  # `matrix` prints the run table; nothing depends on it
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "rulegraph.sh")], check=False).returncode == 0
