"""Peak memory of reading + standardizing one very large image (docs/benchmarks.md).

Each case runs in a fresh process: the peak RSS (``VmHWM``) after imports and after one
``load_standardized`` of a generated image is compared, so the figure is what one request
adds. Usage: ``python scripts/bench_large_decode.py [--side 7000]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = """
import sys, time
from embed.standardize import StandardizeConfig, load_standardized

def hwm_mb():  # VmHWM (peak RSS of this process image; ru_maxrss would carry the parent's over fork)
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024

data = open(sys.argv[1], 'rb').read()
before = hwm_mb()
t = time.perf_counter()
out = load_standardized(data, StandardizeConfig(size=128))
seconds = time.perf_counter() - t
print(f"{hwm_mb() - before:.0f} {seconds:.2f} {float(out.mean()):.6f}")
"""

def _image(kind: str, side: int, folder: Path) -> Path:
    import cv2

    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    grey = (127 + 100 * np.sin(12 * xx) * np.cos(9 * yy)).astype(np.uint8)
    if kind == "jpeg-rgb":
        rgb = np.dstack([grey, np.roll(grey, 5, 0), np.roll(grey, 9, 1)])
        path = folder / "big.jpg"
        cv2.imwrite(str(path), rgb, [cv2.IMWRITE_JPEG_QUALITY, 90])
    elif kind == "png-grey":
        path = folder / "big.png"
        cv2.imwrite(str(path), grey)
    else:  # png-16
        path = folder / "big16.png"
        cv2.imwrite(str(path), grey.astype(np.uint16) * 257)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=7000)
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("jpeg-rgb", "png-grey", "png-16"):
            path = _image(kind, args.side, Path(tmp))
            out = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=root, capture_output=True,
                                 text=True, check=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
            mb, seconds, mean = out.stdout.split()
            rows.append({"image": f"{kind} {args.side}x{args.side}", "peak_rss_added_mb": int(mb),
                         "seconds": float(seconds), "mean": float(mean)})
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
