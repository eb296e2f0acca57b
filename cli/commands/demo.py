"""``cxr demo``: index the shared corpus once, then run the API and the page on localhost.

One command for a first look: it builds (or reuses) an index of the public
datasets with the released model, starts ``cxr serve`` and ``streamlit run
ui/app.py`` as child processes with a freshly generated API key (passed through
the environment, printed once), waits until both answer, prints the URLs, and
stops both cleanly on Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("cxr.demo")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INDEX_DIR = PROJECT_ROOT / ".cache" / "demo_index"

#: (kind, folder under the data dir), in the order they are indexed; only existing folders are used.
DEMO_DATASETS = (
    ("covid-chestxray", "covid-chestxray-dataset"),
    ("nih14", "nih-chestxray14-subset"),
    ("kermany", "chest_xray"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="index the shared corpus and run the API and the page on localhost",
        description=(
            "Build an index of the public chest X-ray corpus with the released model (reused on later "
            "runs), then start the search API and the Streamlit page on localhost with a generated API "
            "key, and print their URLs. Data: --data, else $CXR_DATA_DIR, else ../shared/data next to "
            "the project. Ctrl-C stops both."
        ),
    )
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="folder holding covid-chestxray-dataset/, nih-chestxray14-subset/, chest_xray/ "
                   "(default: $CXR_DATA_DIR, else ../shared/data)")
    p.add_argument("--index", type=Path, default=DEFAULT_INDEX_DIR, metavar="DIR",
                   help="index folder, built if absent or built with another model (default: .cache/demo_index)")
    p.add_argument("--model", type=Path, default=None, metavar="CKPT",
                   help="checkpoint to index with (default: the released model)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the index even if it exists")
    p.add_argument("--host", default="127.0.0.1", help="address both servers bind to (default: 127.0.0.1)")
    p.add_argument("--api-port", type=int, default=8000, metavar="PORT", help="port of the API (default: 8000)")
    p.add_argument("--ui-port", type=int, default=8501, metavar="PORT", help="port of the page (default: 8501)")
    p.add_argument("--ready-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="how long to wait for the API and the page to answer (default: 300)")
    p.add_argument("--exit-when-ready", action="store_true",
                   help="stop both servers as soon as they answer (for timing and CI)")
    p.set_defaults(func=run)


def resolve_data_dir(arg: Path | None) -> Path:
    """--data, else $CXR_DATA_DIR, else ../shared/data from the project root (or the cwd)."""
    from embed.errors import DatasetError

    if arg is not None:
        candidates = [arg]
    elif os.environ.get("CXR_DATA_DIR"):
        candidates = [Path(os.environ["CXR_DATA_DIR"])]
    else:
        candidates = [PROJECT_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    raise DatasetError(
        f"no data folder found (looked at {', '.join(str(c) for c in candidates)}): pass --data DIR or set "
        "CXR_DATA_DIR to a folder with covid-chestxray-dataset/, nih-chestxray14-subset/ or chest_xray/"
    )


def dataset_specs(data_dir: Path) -> list[str]:
    """KIND:PATH specs of the demo datasets present under data_dir."""
    from embed.errors import DatasetError

    specs = [f"{kind}:{data_dir / folder}" for kind, folder in DEMO_DATASETS if (data_dir / folder).is_dir()]
    if not specs:
        raise DatasetError(
            f"{data_dir} holds none of {', '.join(f for _, f in DEMO_DATASETS)}: point --data or "
            "CXR_DATA_DIR at the shared data folder"
        )
    return specs


def default_model(arg: Path | None) -> Path | None:
    """--model, else the released checkpoint when this install has it, else None (index build's default)."""
    from embed.errors import ModelError
    from embed.models import resolve_model_path

    try:
        return resolve_model_path(arg)
    except ModelError:  # this install lacks the released model: index build says what to do
        return None


def index_is_usable(index_dir: Path, model: Path | None) -> tuple[bool, str]:
    """Whether a finished index exists and, when we know the model, matches it.

    "Matches" is the API's own rule (index.manifest.check_compatible): same model
    file and same standardization fingerprint (which also changes when the
    standardization code changes), so the API will not refuse the index.
    """
    from embed.errors import CXRError

    if not (index_dir / "manifest.json").is_file():
        return False, "no index yet"
    if model is None or not model.is_file():
        return True, "reusing the index"
    try:
        from embed.models import load_checkpoint
        from index.manifest import Manifest, check_compatible

        loaded = load_checkpoint(model, device="cpu")
        check_compatible(Manifest.read(index_dir), model_sha256=loaded.sha256, std_cfg=loaded.std_cfg,
                         index_dir=index_dir)
    except CXRError as exc:
        log.debug("index not reusable: %s", exc)
        return False, "the index does not match the model (another model or standardization)"
    return True, "reusing the index"


def run(args: argparse.Namespace) -> int:
    import secrets
    import subprocess
    import time

    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per readiness poll
    check_port_free(args.host, args.api_port, "--api-port")
    check_port_free(args.host, args.ui_port, "--ui-port")
    t0 = time.monotonic()
    index_dir = args.index.resolve()
    model = default_model(args.model)
    usable, why = index_is_usable(index_dir, model)
    if args.rebuild or not usable:
        data_dir = resolve_data_dir(args.data)
        specs = dataset_specs(data_dir)
        cmd = [sys.executable, "-m", "cli", "index", "build", "--out", str(index_dir)]
        if model is not None:
            cmd += ["--model", str(model)]
        cmd += specs
        print(f"Building the demo index ({why if not args.rebuild else 'rebuild asked'}): "
              f"{len(specs)} dataset(s) from {data_dir} into {index_dir}", flush=True)
        print("  cxr " + " ".join(cmd[3:]), flush=True)
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        rc = subprocess.call(cmd, cwd=PROJECT_ROOT)
        if rc != 0:
            print(f"error: building the index failed (exit {rc}); see the messages above", file=sys.stderr)
            return rc if rc > 0 else 1
        print(f"Index built in {time.monotonic() - t0:.0f} s", flush=True)
    else:
        print(f"Reusing the index in {index_dir} (--rebuild to rebuild it)", flush=True)

    key = secrets.token_urlsafe(24)
    api_url = f"http://{args.host}:{args.api_port}"
    ui_url = f"http://{args.host}:{args.ui_port}"
    env = dict(os.environ)
    env.update({
        "CXR_API_API_KEYS": key,
        "CXR_UI_API_URL": api_url,
        "CXR_UI_API_KEY": key,
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    })
    env.pop("CXR_API_API_KEYS_FILE", None)
    api_cmd = [sys.executable, "-m", "cli", "serve", "--index", str(index_dir),
               "--host", args.host, "--port", str(args.api_port)]
    ui_cmd = [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "ui" / "app.py"),
              "--server.headless", "true", "--server.address", args.host,
              "--server.port", str(args.ui_port), "--browser.gatherUsageStats", "false",
              "--client.toolbarMode", "minimal"]
    with Children() as children:
        children.start("api", api_cmd, env=env, cwd=PROJECT_ROOT)
        children.start("page", ui_cmd, env=env, cwd=PROJECT_ROOT)
        try:
            wait_ready(children, api_url, ui_url, timeout=args.ready_timeout)
        except KeyboardInterrupt:
            print("\nStopping the API and the page...", flush=True)
            return 130
        elapsed = time.monotonic() - t0
        print(
            f"\nReady in {elapsed:.0f} s.\n"
            f"  Page: {ui_url}\n"
            f"  API:  {api_url}   (docs: {api_url}/docs)\n"
            f"  API key (X-API-Key, generated for this run, shown once): {key}\n"
            "Press Ctrl-C to stop both.",
            flush=True,
        )
        if args.exit_when_ready:
            return 0
        return children.wait_any()


# -- child processes --------------------------------------------------------------------


def check_port_free(host: str, port: int, flag: str) -> None:
    """A clear error up front instead of a child dying with 'address already in use'."""
    import socket

    from embed.errors import CXRError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise CXRError(f"{host}:{port} is not available ({exc.strerror}): pick another port with {flag}") from exc


class Children:
    """The demo's child processes: started in their own process groups, stopped together.

    Own process groups mean a Ctrl-C reaches only this process, which then stops
    the children in order (SIGINT, then SIGTERM, then SIGKILL) and never leaves one behind.
    """

    def __init__(self) -> None:
        self.procs: dict[str, "subprocess.Popen[bytes]"] = {}

    def __enter__(self) -> "Children":
        import signal

        self._old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        # A shell without job control starts background jobs with SIGINT ignored; `kill -INT` must still stop us.
        self._old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        self.stop()
        signal.signal(signal.SIGTERM, self._old_term)
        signal.signal(signal.SIGINT, self._old_int)

    def start(self, name: str, cmd: list[str], *, env: dict[str, str], cwd: Path) -> None:
        import subprocess

        log.debug("starting %s: %s", name, cmd)
        self.procs[name] = subprocess.Popen(cmd, env=env, cwd=cwd, start_new_session=True)

    def dead(self) -> list[tuple[str, int]]:
        return [(n, p.returncode) for n, p in self.procs.items() if p.poll() is not None]

    def wait_any(self) -> int:
        """Block until a child exits (an error: the other is then stopped) or Ctrl-C (exit 0)."""
        import time

        try:
            while True:
                dead = self.dead()
                if dead:
                    name, rc = dead[0]
                    print(f"error: the {name} process exited (code {rc}); stopping the demo", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nStopping the API and the page...", flush=True)
            return 0

    def stop(self, grace: float = 10.0) -> None:
        import signal
        import subprocess

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in self.procs.values() if p.poll() is None]
            if not alive:
                return
            for p in alive:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            for p in alive:
                try:
                    p.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def wait_ready(children: Children, api_url: str, ui_url: str, *, timeout: float) -> None:
    """Poll the API's /health (index loaded) and the page's health endpoint until both answer."""
    import time

    import httpx

    from embed.errors import CXRError

    deadline = time.monotonic() + timeout
    api_ok = ui_ok = False
    reason = "not answering yet"
    while time.monotonic() < deadline:
        dead = children.dead()
        if dead:
            name, rc = dead[0]
            raise CXRError(f"the {name} process exited (code {rc}) before it was ready; see its messages above")
        try:
            if not api_ok:
                h = httpx.get(f"{api_url}/health", timeout=2).json()
                api_ok = bool(h.get("index_loaded"))
                reason = h.get("reason") or "index not loaded yet"
                if not api_ok and str(reason).startswith("config_mismatch"):
                    raise CXRError(f"the API refused the index ({reason}); run `cxr demo --rebuild`")
            if not ui_ok:
                ui_ok = httpx.get(f"{ui_url}/_stcore/health", timeout=2).status_code == 200
        except (httpx.HTTPError, ValueError):
            pass
        if api_ok and ui_ok:
            return
        time.sleep(0.5)
    raise CXRError(
        f"not ready after {timeout:.0f} s (API index loaded: {api_ok} ({reason}); page up: {ui_ok}); "
        "raise --ready-timeout on a slow machine"
    )
