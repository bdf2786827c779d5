"""Every script answers --help (exit 0) and rejects an unknown option with one line (exit 2)."""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "*.py"))
                 if os.path.basename(p) not in ("config.py", "model.py", "geometry.py", "common.py",
                                                 "readers.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_and_unknown_option(script):
    r = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "usage" in r.stdout.lower(), r.stderr[-500:]
    r = subprocess.run([sys.executable, script, "--no-such-option", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-500:]
