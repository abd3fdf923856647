"""Root conftest: nbval sees it when it collects notebooks/."""

from __future__ import annotations

import collections
import os

# Headless plotting for tests; the executed notebooks embed inline figures.
os.environ.setdefault("MPLBACKEND", "Agg")

_notebook_seconds: dict[str, float] = collections.defaultdict(float)


def pytest_collectstart(collector):
    # TensorFlow writes oneDNN/absl lines to stderr that no cheap env var silences: never compare stderr.
    if str(getattr(collector, "path", "")).endswith(".ipynb"):
        collector.skip_compare += ("stderr",)


def pytest_runtest_logreport(report):
    if report.when == "call" and ".ipynb::" in report.nodeid:
        _notebook_seconds[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if _notebook_seconds:
        terminalreporter.section("notebook run times (nbval, this machine)")
        for name, seconds in sorted(_notebook_seconds.items()):
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")
