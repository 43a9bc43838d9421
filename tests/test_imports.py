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


@pytest.mark.parametrize("module, forbidden", CASES, ids=[m for m, _ in CASES])
def test_import_does_not_load(module, forbidden):
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        f"print(','.join(m for m in {list(forbidden)!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "", f"importing {module} loads {loaded.stdout.strip()}"
