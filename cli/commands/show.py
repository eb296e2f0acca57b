"""``cxr show``: write the image exactly as the model sees it, and print its de-identified metadata."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show",
        help="write the standardized image the model sees (PNG) and print its de-identified metadata",
        description="Read PATH (PNG, JPEG or DICOM, recognised by content) with the project's one reader: "
        "DICOM goes through its Modality LUT, VOI LUT/window and MONOCHROME1 inversion so bone is bright. "
        "Then standardize it (grey, clip the brightest 1%, rescale, optional equalization, resize and pad "
        "to a square) and write the result as an 8-bit PNG, so you can check what the encoder gets. "
        "The metadata printed is the de-identified allow-list (no names, ids, dates or institution). "
        "Example: cxr show scan.dcm --out out/preview.png --size 512 --equalize clahe",
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="image file: PNG, JPEG or DICOM")
    parser.add_argument("--out", "-o", type=Path, default=None,
                        help="PNG file to write (without it only the metadata is printed)")
    parser.add_argument("--checkpoint", type=Path, default=None, metavar="CKPT",
                        help="use the standardization stored in this model checkpoint (default: the released "
                        "model's, 128 px: what it sees); --size/--equalize/--clip-high still override it")
    parser.add_argument("--size", type=int, default=None,
                        help="side of the square output in pixels (default: the checkpoint's, 128 for the released model)")
    parser.add_argument("--equalize", choices=("none", "hist", "clahe"), default=None,
                        help="histogram equalization after clipping (default: none)")
    parser.add_argument("--clip-high", type=float, default=None, metavar="PCT",
                        help="upper intensity percentile kept (default 99: the brightest 1%% is clipped)")
    parser.add_argument("--no-standardize", action="store_true",
                        help="write the decoded image at its own size (min-max scaled to 8 bits) instead")
    parser.add_argument("--raw-photometric", action="store_true",
                        help="do not invert MONOCHROME1 / INVERSE DICOMs (to see the stored polarity)")
    parser.add_argument("--json", action="store_true", help="print the metadata as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read, optionally standardize, write the PNG and print the metadata."""
    import numpy as np

    from embed.errors import CXRError
    from embed.image import read_image
    from embed.standardize import StandardizeConfig, standardize, to_grey, to_png_bytes

    if args.out is not None and args.out.suffix.lower() != ".png":
        raise CXRError(f"--out must name a .png file (got {args.out.name}); previews are always PNG")
    img = read_image(args.path, correct_photometric=not args.raw_photometric)
    from embed.models import released_model_path
    from embed.models.checkpoint import read_checkpoint

    # "What the model sees" means the released model unless another checkpoint is named.
    ckpt = args.checkpoint if args.checkpoint is not None else released_model_path()
    defaults = StandardizeConfig.from_dict(read_checkpoint(ckpt).get("std_cfg") or None)
    cfg = StandardizeConfig(
        size=args.size if args.size is not None else defaults.size,
        equalize=args.equalize or defaults.equalize,
        clip_high_pct=args.clip_high if args.clip_high is not None else defaults.clip_high_pct,
        clip_low_pct=defaults.clip_low_pct,
        clahe_clip=defaults.clahe_clip,
    )
    info: dict = {"format": img.format, "shape": list(img.pixels.shape), **img.meta}
    if args.out is not None:
        if args.no_standardize:
            grey = to_grey(img.pixels)
            lo, hi = float(grey.min()), float(grey.max())
            arr = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
        else:
            arr = standardize(img, cfg)
            info["standardize"] = {**cfg.to_dict(), "fingerprint": cfg.fingerprint()}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(to_png_bytes(arr))
        info["written"] = str(args.out)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        for key, value in info.items():
            print(f"{key}: {value}")
    return 0
