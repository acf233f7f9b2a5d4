"""House rules that code review alone would miss: layers import only downward, the fast commands import
no heavy libraries, and no shell / unsafe deserialisation / hard-coded trust_remote_code anywhere."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tuneboard"

# layer of each module (by path prefix); a module may import only its own layer or lower ones
LAYERS = [
    ("cli/", 4),
    ("__main__.py", 4),
    ("demo.py", 4),
    ("api/", 4),
    ("webui/", 4),
    ("train/", 3),
    ("evaluate/", 3),
    ("inference/", 3),
    ("export/", 3),
    ("hardware/", 3),
    ("model/", 2),
    ("data/", 1),
    ("config.py", 0),
    ("keys.py", 0),
    ("method_keys.py", 0),
    ("hub.py", 0),
    ("errors.py", 0),
    ("files.py", 0),
    ("rundir.py", 0),
    ("__init__.py", 0),
]


def layer_of(rel: str) -> int:
    for prefix, layer in LAYERS:
        if rel == prefix or (prefix.endswith("/") and rel.startswith(prefix)):
            return layer
    raise AssertionError(f"{rel}: not assigned to a layer in tests/test_architecture.py")


def imported_modules(path: Path) -> list[str]:
    """tuneboard modules a file imports, as paths relative to the package. `from .pkg import name` counts as
    an import of pkg/name when that is a module, else of pkg itself (a name from its __init__, or from a
    module beside a directory of the same name)."""
    rel_pkg = path.relative_to(SRC).parent.parts
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += ["/".join(a.name.split(".")[1:]) for a in node.names if a.name.startswith("tuneboard.")]
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = list(rel_pkg[: len(rel_pkg) - node.level + 1])
            parts = base + (node.module.split(".") if node.module else [])
        elif node.module and node.module.startswith("tuneboard"):
            parts = node.module.split(".")[1:]
        else:
            continue
        for alias in node.names:
            sub = "/".join([*parts, alias.name])
            out.append(sub if resolve(sub) else "/".join(parts))
    return out


def resolve(mod: str) -> str | None:
    p = SRC / mod
    if p.with_suffix(".py").exists():
        return str(p.with_suffix(".py").relative_to(SRC))
    if (p / "__init__.py").exists():
        return str((p / "__init__.py").relative_to(SRC)).replace("__init__.py", "")
    return None


def test_layers_import_only_downward():
    problems = []
    for path in SRC.rglob("*.py"):
        rel = str(path.relative_to(SRC))
        if rel.endswith("__init__.py") and rel != "__init__.py":
            continue
        mine = layer_of(rel)
        for mod in imported_modules(path):
            target = resolve(mod)
            if target is None or target == "":
                continue
            theirs = layer_of(target if not target.endswith("/") else target)
            if theirs > mine:
                problems.append(f"{rel} (layer {mine}) imports {target} (layer {theirs})")
    assert not problems, "\n".join(problems)


def import_graph() -> dict[str, set[str]]:
    """file -> the tuneboard files it imports, counting imports inside functions (they hide cycles too)."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = str(path.relative_to(SRC))
        targets = set()
        for mod in imported_modules(path):
            target = resolve(mod)
            if target:
                targets.add(target + "__init__.py" if target.endswith("/") else target)
        graph[rel] = targets - {rel}
    return graph


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_the_graph_sees_names_imported_from_a_package_and_a_module_beside_a_directory():
    """The cycle check is only as good as its edges: these two kinds of import were once dropped."""
    graph = import_graph()
    assert any("inference/__init__.py" in targets for targets in graph.values())  # from ..inference import x
    assert any("webui/locales.py" in targets for targets in graph.values())  # locales.py beside locales/


def test_package_top_stays_small():
    top = sorted(p.name for p in SRC.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(top) <= 8, top


def test_no_file_over_400_lines():
    long = {
        str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, long


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["train", "--help-keys"],
        ["data", "check", "data/triage_train.json"],
        ["data", "preview", "data/identity.json", "-n", "1"],
    ],
)
def test_fast_commands_import_no_heavy_library(argv):
    code = (
        "import sys; from tuneboard.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'gradio', 'datasets', 'peft') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    root = SRC.parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert "HEAVY []" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


FORBIDDEN = [
    (re.compile(r"shell\s*=\s*True"), "no shell: pass argument lists"),
    (re.compile(r"os\.system\("), "no shell"),
    (re.compile(r"\bpickle\.loads?\("), "no unpickling"),
    (re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)"), "torch.load needs weights_only=True"),
    (re.compile(r"trust_remote_code\s*=\s*True"), "trust_remote_code only from the user's config"),
    (re.compile(r"(?<![.\w])(eval|exec)\("), "no eval/exec"),
    (re.compile(r"allow_origins\s*=\s*\[\s*['\"]\*"), "no CORS wildcard"),
    (re.compile(r"""host\s*=\s*['"]0\.0\.0\.0"""), "bind 127.0.0.1 by default"),
]


def test_source_has_no_forbidden_patterns():
    hits = []
    for path in SRC.rglob("*.py"):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for pattern, why in FORBIDDEN:
                if pattern.search(line) and "# noqa: house" not in line:
                    hits.append(f"{path.relative_to(SRC)}:{lineno}: {why}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_every_module_says_what_it_is_for():
    missing = [
        str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert not missing, missing
