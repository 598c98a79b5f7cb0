"""The conda environments (`--sdm conda`): every command a rule runs imports in its rule's env, and each env's
versions are pyproject.toml's.

The rules run `python -m zerosweep <command>` (rules/*.smk); a command may start other zerosweep commands
(launch -> launch-node -> train, nvml-sampler) and console scripts (psrecord) in the same env. The imports are
walked statically (every `import`, in functions too, less `if TYPE_CHECKING:`), so an import that only runs on
a GPU host or on an error path counts as well.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from zerosweep.cli import COMMANDS

# conda-forge names that differ from the PyPI distribution's
CONDA_TO_PYPI = {"matplotlib-base": "matplotlib", "pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}

# Imports the walk finds in modules an env's commands use for something else (a constant, a light function), inside
# functions those commands never call; each must still be found and stay out of what the commands import at start.
NOT_RUN = {
    "analysis.yaml": {
        "nvidia-ml-py": "run.monitors' NVML sampler; report.run_summary takes only its log field names and constants",
        "psrecord": "run.monitors starts it beside training",
    },
}

RULE_BLOCK = re.compile(r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^\S|\Z)", re.MULTILINE | re.DOTALL)
CONDA_ENV = re.compile(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", re.MULTILINE)
ZEROSWEEP_COMMAND = re.compile(r"\{ZEROSWEEP\} ([a-z][\w-]*)")


def rule_commands() -> dict[str, tuple[Path, str]]:
    """rule -> (its conda env file, the zerosweep command its shell runs), for every rule with a conda env."""
    found: dict[str, tuple[Path, str]] = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for name, body in RULE_BLOCK.findall(smk.read_text(encoding="utf-8")):
            env = CONDA_ENV.search(body)
            if env is None:
                continue
            commands = ZEROSWEEP_COMMAND.findall(body)
            assert len(commands) == 1, f"rule {name}: expected one `{{ZEROSWEEP}} <command>`, found {commands}"
            found[name] = ((smk.parent / env.group(1)).resolve(), commands[0])
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, less the bodies of `if TYPE_CHECKING:` (annotations only, never imported at run time)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
            else:
                stack.append(child)


@dataclass
class Walk:
    """What running a set of zerosweep commands imports: third-party top-level names -> a module importing it."""

    third_party: dict[str, str] = field(default_factory=dict)
    executables: dict[str, str] = field(default_factory=dict)  # console script -> a module that starts it
    modules: set[str] = field(default_factory=set)


def _module_source(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    return Path(spec.origin)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def console_scripts() -> set[str]:
    return {entry.name for entry in importlib.metadata.entry_points(group="console_scripts")}


def walk_commands(commands: set[str]) -> Walk:
    walk = Walk()
    scripts = console_scripts()
    pending = ["zerosweep.__main__", "zerosweep.cli", *(COMMANDS[command][0] for command in commands)]
    while pending:
        module = pending.pop()
        if module in walk.modules:
            continue
        walk.modules.add(module)
        parent = module.rpartition(".")[0]
        if parent:
            pending.append(parent)  # importing a submodule runs its package's __init__
        path = _module_source(module)
        package = module if path.name == "__init__.py" else parent
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names: list[str] = []
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.Import):
                names.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                    else node.module or ""
                names.append(base)
                # `from . import x` / `from .pkg import module`: x may be a module
                names.extend(f"{base}.{alias.name}" for alias in node.names
                             if base.startswith("zerosweep") and _is_module(f"{base}.{alias.name}"))
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.append(node.args[0].value)
            elif isinstance(node, ast.List | ast.Tuple):
                items = [item.value if isinstance(item, ast.Constant) else None for item in node.elts]
                for first, second, third in zip(items, items[1:], items[2:] + [None], strict=False):
                    if first == "-m" and isinstance(second, str):  # `python -m <module> [<command>]`
                        names.append(second)
                        if second == "zerosweep" and third in COMMANDS:
                            pending.append(COMMANDS[third][0])
                if items and items[0] in scripts:
                    walk.executables.setdefault(str(items[0]), module)
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "which" and node.args \
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value in scripts:
                walk.executables.setdefault(node.args[0].value, module)
        for name in names:
            top = name.partition(".")[0]
            if top == "zerosweep":
                pending.append(name)
            elif top and top not in sys.stdlib_module_names:
                walk.third_party.setdefault(top, module)
    return walk


# Imported only on a GPU (lazily, by a GPU-only lever), listed in pyproject's `gpu` extra and envs/train.yaml,
# and not installed on CPU machines like this one (its Triton kernels need a GPU): import name -> distribution.
GPU_ONLY = {"liger_kernel": "liger-kernel"}


def distribution_of(top_level: str) -> str:
    if top_level in GPU_ONLY and top_level not in importlib.metadata.packages_distributions():
        return GPU_ONLY[top_level]
    distributions = importlib.metadata.packages_distributions().get(top_level)
    assert distributions, f"{top_level}: imported by zerosweep but not installed here, so no distribution to name"
    return canonicalize_name(distributions[0])


def distribution_of_script(script: str) -> str:
    for distribution in importlib.metadata.distributions():
        if any(entry.group == "console_scripts" and entry.name == script for entry in distribution.entry_points):
            return canonicalize_name(distribution.metadata["Name"])
    raise AssertionError(f"console script {script}: no installed distribution provides it")


def env_requirements(env_file: Path) -> dict[str, Requirement]:
    """PyPI name -> requirement, from a conda env file's conda and pip dependencies."""
    spec = yaml.safe_load(env_file.read_text(encoding="utf-8"))
    entries: list[str] = []
    for dependency in spec["dependencies"]:
        if isinstance(dependency, dict):
            entries.extend(dependency.get("pip", []))
        else:
            entries.append(dependency)
    requirements: dict[str, Requirement] = {}
    for entry in entries:
        name = re.split(r"[<>=!~ ]", entry, maxsplit=1)[0]
        if name in NOT_PACKAGES:
            continue
        requirement = Requirement(CONDA_TO_PYPI.get(name, name) + entry[len(name):])
        requirements[canonicalize_name(requirement.name)] = requirement
    return requirements


def pyproject_requirements() -> dict[str, Requirement]:
    with open(REPO / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]
    listed = [*project["dependencies"], *project["optional-dependencies"]["gpu"]]
    return {canonicalize_name(requirement.name): requirement for requirement in map(Requirement, listed)}


def env_commands() -> dict[Path, set[str]]:
    by_env: dict[Path, set[str]] = {}
    for env_file, command in rule_commands().values():
        by_env.setdefault(env_file, set()).add(command)
    return by_env


def test_every_conda_rule_runs_a_known_command() -> None:
    rules = rule_commands()
    # the rules that run in an env: training, the op build, parsing, tables, plots, tune
    assert {"train", "build_op", "parse_memory", "study_table", "summary", "tune_probe"} <= set(rules)
    assert {command for _, command in rules.values()} <= set(COMMANDS)
    assert {env.name for env, _ in rules.values()} == {"train.yaml", "analysis.yaml"}


def test_the_walk_follows_the_commands_a_command_starts() -> None:
    walk = walk_commands({"launch"})
    # launch -> launch-node (run/node) -> torchrun -> train (run/train), and the NVML sampler beside it
    assert {"zerosweep.run.node", "zerosweep.run.train", "zerosweep.run.monitors"} <= walk.modules
    assert {"torch", "transformers", "deepspeed", "psutil", "pynvml"} <= set(walk.third_party)
    assert "psrecord" in walk.executables


@pytest.mark.parametrize("env_name", ["analysis.yaml", "train.yaml"])
def test_every_import_of_an_envs_commands_is_in_that_env(env_name: str) -> None:
    env_file = REPO / "envs" / env_name
    commands = env_commands()[env_file]
    walk = walk_commands(commands)
    listed = set(env_requirements(env_file)) | set(NOT_RUN.get(env_name, {}))
    missing = {f"{distribution_of(top)} (import {top}, in {module})"
               for top, module in walk.third_party.items() if distribution_of(top) not in listed}
    missing |= {f"{distribution_of_script(script)} (runs {script}, in {module})"
                for script, module in walk.executables.items() if distribution_of_script(script) not in listed}
    assert not missing, f"envs/{env_name} (commands {sorted(commands)}) lacks: {sorted(missing)}"


@pytest.mark.parametrize("env_name", sorted(NOT_RUN))
def test_what_an_env_leaves_out_is_found_and_not_imported(env_name: str) -> None:
    commands = env_commands()[REPO / "envs" / env_name]
    walk = walk_commands(commands)
    found = {distribution_of(top) for top in walk.third_party} | set(map(distribution_of_script, walk.executables))
    assert set(NOT_RUN[env_name]) <= found, "a NOT_RUN entry the walk no longer finds: remove it"
    # what importing the commands' modules loads (the functions that would import more are not called)
    probe = ("import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]; "
             "print(' '.join(sorted({name.partition('.')[0] for name in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", probe, *(COMMANDS[command][0] for command in commands)],
                            check=False, capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO / "scripts")})
    assert result.returncode == 0, result.stderr
    distributions = importlib.metadata.packages_distributions()
    loaded = {canonicalize_name(distributions[top][0]) for top in result.stdout.split() if top in distributions}
    assert not loaded & set(NOT_RUN[env_name]), loaded


@pytest.mark.parametrize("env_name", ["analysis.yaml", "train.yaml"])
def test_env_versions_are_pyprojects(env_name: str) -> None:
    project = pyproject_requirements()
    for name, requirement in env_requirements(REPO / "envs" / env_name).items():
        assert name in project, f"envs/{env_name}: {name} is not a dependency in pyproject.toml"
        assert requirement.specifier == project[name].specifier, (
            f"envs/{env_name}: {requirement} but pyproject.toml has {project[name]}")


@pytest.mark.parametrize("env_name", ["analysis.yaml", "train.yaml"])
def test_env_python_satisfies_requires_python(env_name: str) -> None:
    with open(REPO / "pyproject.toml", "rb") as handle:
        requires = Requirement(f"python{tomllib.load(handle)['project']['requires-python']}").specifier
    spec = yaml.safe_load((REPO / "envs" / env_name).read_text(encoding="utf-8"))
    pythons = [entry for entry in spec["dependencies"] if isinstance(entry, str) and entry.startswith("python=")]
    assert len(pythons) == 1 and Version(pythons[0].removeprefix("python=")) in requires


def test_pyproject_lists_every_package_the_code_imports() -> None:
    walk = walk_commands(set(COMMANDS))
    project = set(pyproject_requirements())
    missing = {f"{distribution_of(top)} (import {top}, in {module})"
               for top, module in walk.third_party.items() if distribution_of(top) not in project}
    assert not missing, f"pyproject.toml's dependencies lack: {sorted(missing)}"
