"""Test helpers for report.html: read its tables back, and look at it in headless Chromium.

Chromium runs with a probe script put in front of the page (in a copy of it): the script records
console errors and failed loads, and at `load` writes what a person would see (image sizes, table
and page widths, resources fetched) as JSON into the DOM, which `--dump-dom` prints. No driver or
websocket client is needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

CHROMIUM_NAMES = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome")
# Set by .ci/run, which installs Chromium: there a missing browser fails the test, never skips it.
REQUIRE_ENV = "VJFER_REQUIRE_BROWSER"
LAPTOP = (1280, 800)  # a common laptop viewport, CSS px
PROBE_JS = """
window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push(
  String(e.message || (e.target && e.target.tagName + " failed to load") || "error")), true);
const __consoleError = console.error;
console.error = (...args) => { window.__errors.push(args.join(" ")); __consoleError(...args); };
window.addEventListener("load", () => {
  const doc = document.documentElement;
  const out = {
    scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth,
    images: [...document.images].map((i) => ({alt: i.alt, naturalWidth: i.naturalWidth,
      naturalHeight: i.naturalHeight, shownWidth: i.clientWidth, complete: i.complete})),
    tables: [...document.querySelectorAll("table")].map((t) => ({name: t.dataset.table,
      width: t.scrollWidth, room: t.parentElement.clientWidth})),
    resources: performance.getEntriesByType("resource").map((r) => r.name),
    errors: window.__errors,
  };
  const pre = document.createElement("pre");
  pre.id = "vjfer-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
"""


class _TableReader(HTMLParser):
    """Collects every <table data-table=NAME>: header texts and, per row, (text, attrs) cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}
        self._table = self._cell = self._row = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("data-table"), {"head": [], "rows": []})
        elif self._table is not None and tag == "tr":
            self._row = []
        elif self._table is not None and tag in ("td", "th"):
            self._cell = [tag, "", attrs]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if all(c[0] == "th" for c in self._row):
                self._table["head"] = [c[1].strip() for c in self._row]
            else:
                self._table["rows"].append([(c[1].strip(), c[2]) for c in self._row])
            self._row = None
        elif tag == "table":
            self._table = None


def read_html_tables(text: str) -> dict[str, dict]:
    """{data-table name: {"head": [column], "rows": [[(text, attrs), ...], ...]}} of a page."""
    reader = _TableReader()
    reader.feed(text)
    return reader.tables


def assert_tables_equal_csvs(page: Path) -> list[str]:
    """Every <table data-table=NAME> of `page` against NAME.csv beside it: the same columns
    (`X std`, `X low` and `X high` shown inside `X`), rows and values (each number's `data-value`
    equals the CSV's exactly, and its text is that value to 2 decimals; an interval's bounds in
    `data-low`/`data-high` and its text `low–high` to 1 decimal). Returns the table names."""
    tables = read_html_tables(page.read_text(encoding="utf-8"))
    for name, table in tables.items():
        frame = pd.read_csv(page.parent / f"{name}.csv")
        names = set(frame.columns)
        folded = {
            f"{c} {s}" for c in names for s in ("low", "high") if {f"{c} low", f"{c} high"} <= names
        }
        cols = [c for c in frame.columns if not (c.endswith(" std") and c[:-4] in names)]
        cols = [c for c in cols if c not in folded]
        assert table["head"] == cols, name
        assert len(table["rows"]) == len(frame), name
        for cells, (_, row) in zip(table["rows"], frame.iterrows(), strict=True):
            for (text, attrs), col in zip(cells, cols, strict=True):
                value, where = row[col], f"{name}.csv column {col!r}"
                if "data-value" in attrs:
                    exact = attrs["data-value"]
                    assert float(exact) == float(value), where
                    shown = f"{float(exact):.2f}" if "." in exact or "e" in exact else exact
                    if col.startswith("Δ"):  # differences carry their sign: +1.20, -3.40
                        shown = f"{float(exact):+.2f}"
                    assert text.split(" ")[0] == shown, where
                    if f"{col} low" in folded and not pd.isna(row[f"{col} low"]):
                        low, high = row[f"{col} low"], row[f"{col} high"]
                        assert (float(attrs["data-low"]), float(attrs["data-high"])) == (low, high)
                        assert text.endswith(f" {low:.1f}–{high:.1f}"), where
                        text = text.rsplit(" ", 1)[0]
                    else:
                        assert "data-low" not in attrs, where
                    if f"{col} std" in frame.columns and not pd.isna(row[f"{col} std"]):
                        assert float(attrs["data-std"]) == row[f"{col} std"], where
                        assert text.endswith(f"± {row[f'{col} std']:.2f}"), where
                elif pd.isna(value):
                    assert text == "—", where
                else:
                    assert text == str(value), where
    return sorted(tables)


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


def chromium_or_skip() -> str:
    """The Chromium binary; skips the test (with the reason) where there is none, or fails
    where the environment says one must exist (CI)."""
    found = find_chromium()
    if found is None:
        reason = (
            f"no headless Chromium ({', '.join(CHROMIUM_NAMES)}) on PATH; install the "
            "Debian package `chromium` (or `chromium-headless-shell`)"
        )
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but {reason}")
        pytest.skip(reason)
    return found


def _chromium(binary: str, profile: Path, size: tuple[int, int], *args: str) -> str:
    """Run headless Chromium in a fresh profile with nothing that reaches the network."""
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def probe_page(binary: str, page: Path, work: Path, size: tuple[int, int] = LAPTOP) -> dict:
    """Load a copy of `page` with the probe script in front and return what the probe saw."""
    probed = work / f"probed-{page.name}"
    probed.write_text(
        page.read_text(encoding="utf-8").replace("<head>", f"<head><script>{PROBE_JS}</script>", 1),
        encoding="utf-8",
    )
    dom = _chromium(
        binary,
        work / "profile-probe",
        size,
        "--virtual-time-budget=10000",
        "--dump-dom",
        probed.as_uri(),
    )
    found = re.search(r'<pre id="vjfer-probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe script did not run; DOM starts {dom[:300]!r}"
    return json.loads(unescape(found.group(1)))


def dump_dom(binary: str, page: Path, work: Path, size: tuple[int, int] = LAPTOP) -> str:
    """The DOM Chromium built from `page` (what it parsed, not the file's text)."""
    return _chromium(binary, work / "profile-dom", size, "--dump-dom", page.as_uri())


def screenshot(binary: str, page: Path, png: Path, size: tuple[int, int]) -> Path:
    """A PNG of `page` rendered at `size` (width, height in CSS px)."""
    _chromium(binary, png.parent / "profile-shot", size, f"--screenshot={png}", page.as_uri())
    assert png.is_file(), f"chromium wrote no screenshot to {png}"
    return png
