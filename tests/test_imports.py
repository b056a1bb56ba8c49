"""Imports flow one way (DESIGN.md section 2); heavy libraries stay in their one module."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "lpusim"

# a module may import only modules of its own layer or below
LAYERS = ["cli", "api", "report", "serve", "speculative", "step", "sim", "compiler", "gpu",
          "program", "graph", "cost", "config", "units", "errors", "atomic"]
# the two backends of the step layer: the LPU compiler and the GPU model never import each
# other; lpusim.gpu's calibration and validation (which run scenarios) sit above the step layer
GPU_ABOVE_STEP = {"calibrate", "validate"}
FORBIDDEN = {
    "sim": {"compiler", "graph", "speculative", "api", "cli", "report", "step", "gpu"},
    "compiler": {"sim", "speculative", "api", "cli", "report", "step", "gpu"},
    "gpu": {"compiler", "speculative", "api", "cli", "report", "step", "runner", "calibrate",
            "serve"},
    "gpu-above-step": {"compiler", "cli", "report"},
    "graph": {"compiler", "sim", "speculative", "api", "cli", "report", "step", "gpu"},
    "config": {"graph", "compiler", "sim", "speculative", "api", "cli", "report", "step",
               "gpu"},
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
    parts = path.relative_to(PKG).parts
    if parts[0] == "gpu" and path.stem in GPU_ABOVE_STEP:
        return "gpu-above-step"
    return parts[0].removesuffix(".py")


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


def test_gpu_backend_and_lpu_compiler_stay_apart():
    """Both directions, checked by name (the layer table above could be edited away)."""
    for f in PKG.rglob("*.py"):
        mods = {m for m in imports(f) if m.startswith("lpusim.")}
        if area(f) in ("gpu", "gpu-above-step"):
            assert not {m for m in mods if m.startswith("lpusim.compiler")}, f
        if area(f) == "compiler":
            assert not {m for m in mods if m.startswith("lpusim.gpu")}, f
    assert (PKG / "gpu" / "step.py").is_file()


def test_heavy_libraries_stay_in_their_module():
    bad = []
    for f in PKG.rglob("*.py"):
        for mod in imports(f):
            lib = mod.split(".")[0]
            if lib in ONLY_IN and area(f) != ONLY_IN[lib]:
                bad.append(f"{f.relative_to(PKG)} imports {lib}")
    assert not bad
