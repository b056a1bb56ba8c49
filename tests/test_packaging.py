"""The shipped specs are found wherever lpusim is installed, and nothing shadows them by
accident: lookup order explicit path, $LPUSIM_DATA, packaged data (lpusim/config/load.py)."""

from pathlib import Path

import pytest

from lpusim.config import load
from lpusim.config.load import find, packaged_data, resolve_ref, shipped

ROOT = Path(__file__).resolve().parent.parent


def test_packaged_data_is_the_checkout_when_run_from_source():
    assert packaged_data() == ROOT
    assert shipped("chip")["groqchip1"] == ROOT / "chip_configs" / "groqchip1.yaml"
    assert "llama-3.1-70b-specdec" in shipped("scenario")


def test_working_directory_does_not_shadow_shipped_names(tmp_path, monkeypatch):
    # an old checkout's layout in the working directory, with a chip of a different clock
    (tmp_path / "chip_configs").mkdir()
    text = (ROOT / "chip_configs" / "groqchip1.yaml").read_text()
    (tmp_path / "chip_configs" / "groqchip1.yaml").write_text(text.replace("900MHz", "1GHz"))
    (tmp_path / "groqchip1").write_text(text)         # a bare file with the name, too
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LPUSIM_DATA", raising=False)
    assert resolve_ref("chip", "groqchip1") == ROOT / "chip_configs" / "groqchip1.yaml"
    assert load(resolve_ref("chip", "groqchip1"), "chip").clock_hz == 900_000_000
    # written as a path, the local file is read
    assert resolve_ref("chip", "chip_configs/groqchip1.yaml") == Path("chip_configs/groqchip1.yaml")
    assert load("chip_configs/groqchip1.yaml", "chip").clock_hz == 1_000_000_000


def test_lpusim_data_comes_before_the_packaged_data(tmp_path, monkeypatch):
    (tmp_path / "chip_configs").mkdir()
    text = (ROOT / "chip_configs" / "groqchip1.yaml").read_text()
    (tmp_path / "chip_configs" / "groqchip1.yaml").write_text(text.replace("900MHz", "1GHz"))
    monkeypatch.setenv("LPUSIM_DATA", str(tmp_path))
    assert find("chip", "groqchip1") == tmp_path / "chip_configs" / "groqchip1.yaml"
    assert "groq3-lp30" in shipped("chip")              # the rest still comes from the package


def test_bare_name_falls_back_to_a_file_only_when_nothing_is_shipped(tmp_path):
    (tmp_path / "my-chip").write_text("kind: chip\n")
    assert find("chip", "my-chip", tmp_path) == tmp_path / "my-chip"
    assert find("chip", "no-such-chip", tmp_path) is None
    assert find("chip", "sub/groqchip1.yaml", tmp_path) is None   # a path is only a path




def test_wheel_maps_every_shipped_directory_and_every_package(monkeypatch):
    import setuptools
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    monkeypatch.chdir(ROOT)
    exec(compile((ROOT / "setup.py").read_text(), "setup.py", "exec"), {"__name__": "x"})
    data = {d for d in (ROOT / "chip_configs", ROOT / "workloads")}
    data |= {d for base in list(data) for d in base.rglob("*") if d.is_dir()}
    mapped = {ROOT / p for p in captured["package_dir"].values()}
    assert data <= mapped, f"not in the wheel: {sorted(data - mapped)}"
    code = {".".join(p.relative_to(ROOT).parts) for p in (ROOT / "lpusim").rglob("__init__.py")}
    code = {c.removesuffix(".__init__.py") for c in code}
    assert code <= set(captured["packages"])
    assert "[tool.setuptools.packages" not in (ROOT / "pyproject.toml").read_text(), \
        "packages are discovered in setup.py; do not list them in pyproject.toml too"
    shipped_files = {p.suffix for base in ("chip_configs", "workloads")
                     for p in (ROOT / base).rglob("*") if p.is_file()}
    patterns = {pat.removeprefix("*") for pat in captured["package_data"]["lpusim.workloads"]}
    assert shipped_files <= patterns, f"file types not in the wheel: {shipped_files - patterns}"
    inside = {p.suffix for p in (ROOT / "lpusim").rglob("*") if p.is_file()
              and p.suffix not in (".py", ".pyc")}
    own = {pat.rsplit("*", 1)[-1] for pat in captured["package_data"]["lpusim"]}
    assert inside <= own, f"data files inside lpusim/ not in the wheel: {inside - own}"


@pytest.mark.parametrize("kind", ["chip", "system", "model", "scenario"])
def test_every_kind_has_shipped_specs(kind):
    assert shipped(kind)
