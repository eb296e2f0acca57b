"""The page is an HTTP client only: importing it must not pull in the engine, torch or FAISS."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import PROJECT_ROOT

CODE = """
import sys
import ui.app  # runs the page script in Streamlit's bare mode: the API is down, so it shows an error
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('index', 'torch', 'faiss', 'search_api', 'timm', 'embed'))
print('HEAVY=' + ','.join(heavy))
"""


def test_importing_the_page_does_not_import_the_engine(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "CXR_UI_API_URL": "http://127.0.0.1:9", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", CODE], cwd=PROJECT_ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY=")]
    assert line == ["HEAVY="], f"the page imported engine modules: {line}"
    assert "Traceback" not in out.stderr
