"""How the code is put together: imports flow one way with no cycle, training loads no GUI,
and the command line parses without loading any command's modules."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("playground", "envs", "agents", "gan", "viewer", "compare", "benchmarks")
TOP_MODULES = ("run", "demo")
# What each package may import of the project (besides itself): imports flow one way.
ALLOWED = {
    "playground": set(),
    "envs": {"playground"},
    "agents": {"playground", "envs"},
    "gan": {"playground", "envs"},  # envs: the frames of the built-in games (--dataset games)
    "viewer": {"playground", "envs", "agents"},
    "compare": {"playground"},  # it starts run.py processes, it imports no trainer
    "benchmarks": {"playground", "envs", "agents", "gan"},
}
OWN = set(PACKAGES) | set(TOP_MODULES) | {"tests"}


def project_modules() -> dict[str, Path]:
    modules = {name: ROOT / f"{name}.py" for name in TOP_MODULES}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules `path` imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] in OWN and name in modules:
                found.add(name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_the_import_graph_has_no_cycle(graph: dict[str, set[str]]) -> None:
    """Depth-first search; a module met again on the current path closes a cycle."""
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if imported.startswith(module + "."):
                continue  # a package importing its own submodules is not a cycle
            if state.get(imported) == "open":
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)
    assert len(graph) > 40 and sum(map(len, graph.values())) > 80  # the graph was read


def test_imports_flow_one_way(graph: dict[str, set[str]]) -> None:
    wrong = [
        f"{module} imports {imported}"
        for module, imported_modules in graph.items()
        for imported in imported_modules
        if module.split(".")[0] in ALLOWED
        and imported.split(".")[0] != module.split(".")[0]
        and imported.split(".")[0] not in ALLOWED[module.split(".")[0]]
    ]
    assert not wrong, "\n".join(sorted(wrong))
    assert not any("run" in imported for imported in graph.values()), "nothing imports run.py"


def _modules_loaded_by(code: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint('MODULES', *sys.modules)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("MODULES ")]
    return set(line.split()[1:])


def test_training_and_sampling_load_no_gui() -> None:
    everything_but_the_viewer = [
        name
        for name in project_modules()
        if name.split(".")[0] in ("playground", "envs", "agents", "gan")
    ]
    loaded = _modules_loaded_by("\n".join(f"import {name}" for name in everything_but_the_viewer))
    assert "agents.dqn" in loaded and "gan.train" in loaded
    assert "pygame" not in loaded
    sampler = _modules_loaded_by("import gan.sample")
    assert not {"gan.train", "gan.metrics", "gan.data", "torchmetrics"} & sampler


def test_the_command_line_parses_without_the_commands_modules() -> None:
    loaded = _modules_loaded_by(
        "import run\ntry:\n    run.parse(['train-dqn', '--help'])\nexcept SystemExit:\n    pass"
    )
    heavy = {"agents.dqn", "gan.train", "viewer.window", "envs", "gymnasium", "pygame"}
    assert not heavy & loaded, heavy & loaded
    assert {"agents.config", "gan.config", "viewer.config"} <= loaded


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """(line, value) of every string literal of a module, f-string parts included."""
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_no_tensorboard_tag_is_spelled_outside_its_constants() -> None:
    from playground import tags

    known = {
        value
        for name, value in vars(tags).items()
        if name.isupper() and isinstance(value, str) and re.fullmatch(r"\w+/\w*", value)
    }
    assert len(known) > 20  # the constants are there to be found
    prefixes = {tag.split("/")[0] for tag in known}
    spelled = [
        f"{path.relative_to(ROOT)}:{line} {value!r}"
        for name, path in project_modules().items()
        if name != "playground.tags"
        for line, value in _string_constants(path)
        if value in known or re.fullmatch(rf"({'|'.join(prefixes)})/\w*", value)
    ]
    # ... nor a literal handed to a logger call as its tag
    logged = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for name, path in project_modules().items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"scalar", "scalars", "text", "image", "video"}
        and node.args
        and isinstance(node.args[0], (ast.Constant, ast.JoinedStr))
    ]
    assert spelled == [] and logged == [], "use playground.tags: " + ", ".join(spelled + logged)
    page = (ROOT / "viewer" / "page.html").read_text()
    assert [tag for tag in known if tag in page] == []  # the page gets them from the server


def test_images_go_between_uint8_and_signed_floats_in_one_place() -> None:
    # 127.5 is the scale of [0, 255] <-> [-1, 1]; playground.media's to_float / to_uint8 hold it.
    converting = [
        f"{path.relative_to(ROOT)}:{line}"
        for name, path in project_modules().items()
        if name != "playground.media"
        for line, text in enumerate(path.read_text().splitlines(), 1)
        if "127.5" in text
    ]
    assert converting == [], "use playground.media.to_float / to_uint8: " + ", ".join(converting)


# Modules of the library layers that print results to stdout (scores, files written, where
# the run is); everything else a run tells its user is a note on stderr (playground.notes).
RESULT_PRINTERS = {"agents.evaluate", "gan.sample", "playground.lifecycle"}


def test_notes_go_through_one_channel_on_stderr() -> None:
    noted_elsewhere, printing = [], []
    for name, path in project_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                name != "playground.notes"
                and isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith("note: ")
            ):
                noted_elsewhere.append(f"{name}:{node.lineno}")
            library = name.split(".")[0] in ("playground", "envs", "agents", "gan")
            if (
                library
                and name not in RESULT_PRINTERS
                and isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                printing.append(f"{name}:{node.lineno}")
    assert noted_elsewhere == [], "write notes with playground.notes.note: " + str(noted_elsewhere)
    assert printing == [], "say / note (stderr) instead of print: " + str(printing)


def _imported_names(path: Path) -> set[str]:
    """Every module name `path` imports, at the top or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_logger_touches_tensorboard_files() -> None:
    touching = sorted(
        name
        for name, path in project_modules().items()
        if any(
            imported.split(".")[0] == "tensorboard"
            or imported.startswith("torch.utils.tensorboard")
            for imported in _imported_names(path)
        )
    )
    assert touching == ["playground.logger"]


def test_pygame_is_only_in_the_viewer_and_the_games_human_render_mode() -> None:
    using = sorted(
        name
        for name, path in project_modules().items()
        if any(imported.split(".")[0] == "pygame" for imported in _imported_names(path))
    )
    assert [name for name in using if not name.startswith("viewer")] == ["envs.builtin.base"]
    # There, only the window of render_mode "human" (and its closing) imports it.
    tree = ast.parse((ROOT / "envs" / "builtin" / "base.py").read_text())
    importing = {
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Import) and any(a.name == "pygame" for a in node.names)
    }
    assert importing == {"_show", "close"}
