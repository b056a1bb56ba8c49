"""Build-time layout of the wheel (the rest of the metadata is in pyproject.toml).

The shipped specs keep their home in the repository's top-level `chip_configs/` and
`workloads/` directories; the build maps them into the package as `lpusim/chip_configs/` and
`lpusim/workloads/` (read with importlib.resources, see lpusim/config/load.py). Packages are
discovered, not listed, so a new subpackage of lpusim/ is never left out of the wheel.
"""

from setuptools import find_packages, setup

# package inside the wheel -> its directory in the repository
DATA_PACKAGES = {
    "lpusim.chip_configs": "chip_configs",
    "lpusim.workloads": "workloads",
    "lpusim.workloads.scenarios": "workloads/scenarios",
    "lpusim.workloads.sweeps": "workloads/sweeps",
}
DATA_FILES = ["*.yaml", "*.yml", "*.csv", "*.jsonl"]   # specs and acceptance traces

setup(
    packages=find_packages(include=["lpusim", "lpusim.*"]) + list(DATA_PACKAGES),
    package_dir=DATA_PACKAGES,
    # lpusim/data/: data that lives inside the package itself (published figures)
    package_data={"lpusim": ["data/*.yaml"]} | {p: DATA_FILES for p in DATA_PACKAGES},
)
