"""The kill-and-resume drill (benchmarks/drills.py) with a small N: every resumed run ends equal."""

import sys

import pytest

from helpers import ROOT, run

pytestmark = pytest.mark.integration  # launches real processes


def test_killed_at_random_moments_every_resume_equals_the_straight_run():
    proc = run([sys.executable, str(ROOT / "benchmarks" / "drills.py"), "--runs", "2", "--seed", "1"])
    assert "resumes equal: 2 / 2" in proc.stdout, proc.stdout
