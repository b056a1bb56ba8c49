"""Imports flow one way (DESIGN.md section 2); heavy libraries stay in their one module."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "lpusim"

# a module may import only modules of its own layer or below
LAYERS = ["cli", "api", "report", "serve", "speculative", "step", "sim", "compiler", "program",
          "graph", "cost", "config", "units", "errors", "atomic"]
FORBIDDEN = {
    "sim": {"compiler", "graph", "speculative", "api", "cli", "report", "step"},
    "compiler": {"sim", "speculative", "api", "cli", "report", "step"},
    "graph": {"compiler", "sim", "speculative", "api", "cli", "report", "step"},
    "config": {"graph", "compiler", "sim", "speculative", "api", "cli", "report", "step"},
    "speculative": {"api", "cli", "report"},
    "program": {"compiler", "sim", "graph", "speculative", "api", "cli", "report"},
    "cost": {"graph", "compiler", "sim", "speculative", "step", "runner", "serve", "api", "cli",
             "report"},
    "serve": {"api", "cli", "report"},
}
ONLY_IN = {"simpy": "sim", "matplotlib": "report", "yaml": "config", "tqdm": "progress"}


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def area(path: Path) -> str:
    return path.relative_to(PKG).parts[0].removesuffix(".py")


def test_layers_import_one_way():
    bad = []
    for f in PKG.rglob("*.py"):
        a = area(f)
        for mod in imports(f):
            if mod.startswith("lpusim."):
                target = mod.split(".")[1]
                if target in FORBIDDEN.get(a, set()):
                    bad.append(f"{f.relative_to(PKG)} imports {mod}")
    assert not bad


def test_heavy_libraries_stay_in_their_module():
    bad = []
    for f in PKG.rglob("*.py"):
        for mod in imports(f):
            lib = mod.split(".")[0]
            if lib in ONLY_IN and area(f) != ONLY_IN[lib]:
                bad.append(f"{f.relative_to(PKG)} imports {lib}")
    assert not bad
