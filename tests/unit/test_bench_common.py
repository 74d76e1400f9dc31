"""Unit tests for bench/common.py: the one figure harness both benchmarks print with."""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_common() -> ModuleType:
    """bench/common.py by its path: bench/ is not a package, and put on sys.path it would
    shadow packages (bench/dns.py is not dnspython)."""
    spec = importlib.util.spec_from_file_location("common", BENCH / "common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["common"] = module
    spec.loader.exec_module(module)
    return module


common = _load_common()
Figure, figure_table = common.Figure, common.figure_table


def test_a_figure_is_marked_only_against_a_target() -> None:
    assert Figure("attach, median", "2.10 ms", "<= 5 ms", True).mark == "OK"
    assert Figure("detach, median", "3.00 ms", "<= 2 ms", False).mark == "MISS"
    assert Figure("attach, p90", "4.00 ms").mark == ""


def test_a_figure_survives_the_json_between_the_runs() -> None:
    f = Figure("one more port", "4.2 ms", "<= 5 ms", True, phase="nftables")
    assert Figure(**asdict(f)) == f


def test_table_without_phases() -> None:
    assert figure_table([Figure("attach, median", "2.10 ms", "<= 5 ms", True),
                         Figure("attach, very first call", "4.06 ms")]) == [
        "figure                   measured  target",
        "attach, median           2.10 ms   <= 5 ms  OK",
        "attach, very first call  4.06 ms",
    ]


def test_table_with_phases_has_a_phase_column_and_a_gap_between_phases() -> None:
    assert figure_table([Figure("10,000 ports", "0.8 s", "<= 2 s", True, "nftables"),
                         Figure("one more port", "4.2 ms", "<= 5 ms", True, "nftables"),
                         Figure("10,000 ports", "2.5 s", "<= 2 s", False, "iptables")]) == [
        "phase     figure         measured  target",
        "nftables  10,000 ports   0.8 s     <= 2 s   OK",
        "nftables  one more port  4.2 ms    <= 5 ms  OK",
        "",
        "iptables  10,000 ports   2.5 s     <= 2 s   MISS",
    ]


def test_no_figures_no_table() -> None:
    assert figure_table([]) == []


def test_run_names_the_command_that_failed() -> None:
    assert common.run([sys.executable, "-c", "print('x')"]).stdout == "x\n"
    with pytest.raises(RuntimeError, match="exited 3: boom"):
        common.run([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])


@pytest.mark.parametrize("script", ["attach.py", "ports.py"])
def test_the_benchmarks_define_no_harness_of_their_own(script: str) -> None:
    tree = ast.parse((BENCH / script).read_text())
    own = {n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)}
    assert not own & {"Figure", "run", "check_ns", "ns_key", "figure_table", "make_host_ns"}
