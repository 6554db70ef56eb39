"""Rough edges a new user hits: bad config files and folders give one line, not a traceback;
.ci/run finds the real tiles only where documented; figure files stay small; viz stands alone."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- import circle
def test_viz_imports_without_experiments() -> None:
    code = "import sys, cism_lib.viz; print('cism_lib.experiments' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=REPO, env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.stdout.strip() == "False"
    tree = ast.parse((REPO / "cism_lib" / "viz.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "cism_lib.experiments" not in imported  # not even inside a function
