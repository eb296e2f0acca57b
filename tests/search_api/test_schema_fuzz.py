"""Schema-driven fuzzing: schemathesis against a real server's /openapi.json.

The schema must say what the server enforces: every check passes, so no request
the schema allows is refused, no refused request is a 500, every answer matches
its documented schema and status. Bounded (a few examples per operation, fixed
seed, no stateful phase) to stay a short part of the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.search_api.conftest import API_KEY

PROJECT_ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("schemathesis", reason="schemathesis is installed by `make test` (the dev extra)")


def test_schemathesis_passes_against_the_live_server(live_server, tmp_path):
    url = live_server(api_keys=API_KEY, max_k=20, max_thumb_size=128, engine_threads=2)
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    cmd = [exe, "run", f"{url}/openapi.json", "-H", f"X-API-Key: {API_KEY}",
           "--max-examples", "6", "--seed", "1", "--phases", "examples,coverage,fuzzing", "--workers", "1",
           "--request-timeout", "60", "--generation-database", "none", "--no-color",
           "--report", "junit", "--report-dir", str(tmp_path)]
    # On the wire a multipart text part is a string whatever type was drawn ("finding" as one string or a
    # list of one, "0" for false): the negative check cannot tell them apart on form bodies.
    config = tmp_path / "schemathesis.toml"
    config.write_text('[[operations]]\ninclude-path-regex = "^/v1/(search|classify|embed)$"\nchecks.negative_data_rejection.enabled = false\n')
    cmd.insert(1, f"--config-file={config}")
    env = dict(os.environ, SCHEMATHESIS_HOOKS="tests.search_api.st_hooks", PYTHONPATH=str(PROJECT_ROOT))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stdout[-12000:] + res.stderr[-3000:]
