"""Imports run one way: stage 2 never loads the video decoder, prediction never loads the plotting
library, and the table and run-finding modules load neither the report nor the encoders."""

from __future__ import annotations

import json
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


# One interpreter imports what the cases may all load (numpy, then torch), forks one child per case
# at the last step its case allows, and the child imports the case's module: each case starts from
# an interpreter holding none of its forbidden modules (checked), and torch is imported once.
PRELOAD = ("numpy", "torch")
DRIVER = """
import importlib, json, os, sys, traceback
cases, preload = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for step in range(len(preload) + 1):
    if step:
        importlib.import_module(preload[step - 1])
    for module, forbidden in cases:
        allowed = next((k for k, name in enumerate(preload) if name in forbidden), len(preload))
        if allowed != step:
            continue
        early = [m for m in forbidden if m in sys.modules]
        if early:
            sys.exit(f"preloading {preload[:step]} loaded {early}, forbidden for {module}")
        pid = os.fork()
        if pid == 0:
            try:
                importlib.import_module(module)
                print(json.dumps([module, ",".join(m for m in forbidden if m in sys.modules)]))
                sys.stdout.flush()
                os._exit(0)
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
                os._exit(1)
        if os.waitpid(pid, 0)[1] != 0:
            sys.exit(f"importing {module} failed")
"""


@pytest.fixture(scope="module")
def loaded() -> dict[str, str]:
    """module -> the forbidden modules it loaded, each import in its own forked interpreter."""
    args = [json.dumps(CASES), json.dumps(PRELOAD)]
    command = [sys.executable, "-c", DRIVER, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = dict(json.loads(line) for line in done.stdout.splitlines())
    assert sorted(out) == sorted(m for m, _ in CASES), done.stderr
    return out


@pytest.mark.parametrize("module", [m for m, _ in CASES])
def test_import_does_not_load(loaded, module):
    assert loaded[module] == "", f"importing {module} loads {loaded[module]}"
