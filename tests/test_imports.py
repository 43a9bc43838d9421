"""Imports run one way: stage 2 never loads the video decoder, prediction never loads the plotting
library, and the table and run-finding modules load neither the report nor the encoders."""

from __future__ import annotations

import subprocess
import sys

import pytest

# (module imported, modules it must not load); each case runs in a fresh interpreter
CASES = [
    ("vjfer.probe.train", ("av", "matplotlib", "vjfer.video", "vjfer.encoders")),
    ("vjfer.probe.run", ("av", "matplotlib", "vjfer.video", "vjfer.report")),
    ("vjfer.predict", ("matplotlib", "vjfer.report", "vjfer.cross")),
    ("vjfer.cross", ("matplotlib", "vjfer.report", "vjfer.video")),
    ("vjfer.tables", ("torch", "vjfer.report", "vjfer.cache")),
    ("vjfer.clips", ("av", "torch", "h5py")),
    ("vjfer.cache", ("av", "matplotlib", "vjfer.video")),
    ("vjfer.probe.model", ("av", "vjfer.encoders")),
]


@pytest.fixture(scope="module")
def loaded() -> dict[str, str]:
    """module -> the forbidden modules it loaded, each import in its own interpreter (all at once)."""
    runs = {}
    for module, forbidden in CASES:
        code = (
            f"import sys, importlib; importlib.import_module({module!r}); "
            f"print(','.join(m for m in {list(forbidden)!r} if m in sys.modules))"
        )
        runs[module] = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)  # fmt: skip
    out = {}
    for module, proc in runs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"importing {module} failed:\n{stderr}"
        out[module] = stdout.strip()
    return out


@pytest.mark.parametrize("module", [m for m, _ in CASES])
def test_import_does_not_load(loaded, module):
    assert loaded[module] == "", f"importing {module} loads {loaded[module]}"
