"""Imports flow one way (docs/architecture.md, "Import layers"); heavy libraries stay in their
one module. Every module of lpusim/ is checked: a new module or subpackage must be given its
place in ALLOWED before this test passes."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "lpusim"

_BASE = {"units", "errors", "atomic", "caches", "collector", "progress", "parallel",
         "strategy_traits"}
# area (a top-level module or subpackage of lpusim) -> the areas it may import; the graph is
# acyclic (checked below), so imports flow one way. sim and compiler do not import each other
# (the simulator only consumes a Program); report consumes results, never produces them.
ALLOWED: dict[str, set[str]] = {
    "__init__": set(),
    "errors": set(),
    "atomic": set(),
    "caches": set(),
    "collector": set(),                      # the garbage collector paused while computing
    "progress": set(),                       # progress display (stderr), no lpusim imports
    "parallel": set(),                       # results computed ahead in forked children
    # the speculation strategies' names and facts (a table), read by the layers below
    # speculative (the schema, deployment, report); the strategies register above it
    "strategy_traits": set(),
    "units": {"errors"},
    "config": {"errors", "units", "caches", "strategy_traits"},
    "published": {"config"} | _BASE,        # the published figures (lpusim/data/)
    "graph": {"config"} | _BASE,
    "program": _BASE,
    "compiler": {"program", "graph", "config"} | _BASE,
    "sim": {"program"} | _BASE,
    "step": {"compiler", "sim", "graph", "program", "config"} | _BASE,
    # the deployment policy: chips, tensor parallelism and stages for a scenario (it may
    # simulate candidate steps)
    "deploy": {"step", "compiler", "sim", "graph", "program", "config"} | _BASE,
    "speculative": {"step", "deploy", "compiler", "sim", "graph", "program", "config"} | _BASE,
    "runner": {"speculative", "deploy", "step", "compiler", "sim", "graph", "program",
               "config"} | _BASE,
    "sweep": {"runner", "config"} | _BASE,
    "report": {"sim", "program"} | _BASE,
    "api": {"report", "sweep", "runner", "speculative", "deploy", "step", "compiler", "sim",
            "graph", "program", "config"} | _BASE,
    "calibrate": {"api", "published", "runner", "speculative", "deploy", "step", "compiler",
                  "sim", "graph", "program", "config"} | _BASE,
}
# areas arriving from other branches, placed ahead of their merge (harmless until they exist):
# the cost model, the GPU backend (its step below lpusim.step; its calibration and validation,
# which run scenarios, above the runner) and the serving layer (above the runner)
ALLOWED["cost"] = {"config"} | _BASE
ALLOWED["results"] = {"errors"}         # reading result files (JSON lines), below everything
for _a in ("sweep", "api", "report", "calibrate"):
    ALLOWED[_a] |= {"results"}
ALLOWED["gpu"] = {"graph", "sim", "program", "config", "published"} | _BASE
ALLOWED["step"] |= {"gpu"}
ALLOWED["speculative"] |= {"gpu"}
ALLOWED["runner"] |= {"gpu"}
ALLOWED["gpu.validate"] = ALLOWED["runner"] | {"runner", "published", "gpu"}
ALLOWED["serve"] = ALLOWED["runner"] | {"runner", "cost"}
ALLOWED["api"] |= {"cost", "serve", "gpu", "gpu.validate"}
ALLOWED["calibrate"] |= {"cost", "gpu", "gpu.validate"}
# modules of a subpackage that sit in another layer than the rest of it
SUBAREAS = {"gpu/calibrate.py": "gpu.validate", "gpu/validate.py": "gpu.validate"}
ALLOWED["cli"] = set(ALLOWED) - {"cli"}
ONLY_IN = {"simpy": "sim", "matplotlib": "report", "yaml": "config", "tqdm": "progress"}


def modules() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file (function-level imports too);
    `from lpusim import api` counts as importing lpusim.api."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports (from lpusim.x import y)"
            if node.module == "lpusim":
                out |= {f"lpusim.{a.name}" for a in node.names}
            elif node.module:
                out.add(node.module)
    return out


def area(path: Path) -> str:
    rel = path.relative_to(PKG)
    return SUBAREAS.get(rel.as_posix(), rel.parts[0].removesuffix(".py"))


def target_area(module: str) -> str:
    """The area of an imported lpusim module ('lpusim.gpu.validate' -> 'gpu.validate')."""
    parts = module.split(".")[1:]
    for n in (2, 1):
        sub = "/".join(parts[:n]) + ".py"
        if sub in SUBAREAS:
            return SUBAREAS[sub]
    return parts[0]


def test_every_module_has_a_layer():
    assert len(modules()) > 30
    unplaced = sorted({str(f.relative_to(PKG)) for f in modules() if area(f) not in ALLOWED})
    assert not unplaced, f"give these a place in tests/test_imports.py ALLOWED: {unplaced}"


def test_layers_are_acyclic():
    try:
        order = list(TopologicalSorter(ALLOWED).static_order())
    except CycleError as e:
        raise AssertionError(f"import layers form a cycle: {e.args[1]}") from None
    assert order[-1] == "cli"


def test_layers_import_one_way():
    bad = []
    for f in modules():
        a = area(f)
        for mod in imports(f):
            if mod.startswith("lpusim."):
                target = target_area(mod)
                if target not in (ALLOWED.get(a, set()) | {a}) and target != "__version__":
                    bad.append(f"{f.relative_to(PKG)} imports {mod}")
    assert not bad


def test_checker_sees_function_level_and_package_imports(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def g():\n    from lpusim import api\n    import lpusim.sim.engine\n")
    assert imports(f) == {"lpusim.api", "lpusim.sim.engine"}


def test_heavy_libraries_stay_in_their_module():
    bad = []
    for f in modules():
        for mod in imports(f):
            lib = mod.split(".")[0]
            if lib in ONLY_IN and area(f) != ONLY_IN[lib]:
                bad.append(f"{f.relative_to(PKG)} imports {lib}")
    assert not bad
