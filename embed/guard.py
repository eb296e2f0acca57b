"""Out-of-distribution guard: is a query a chest radiograph like the ones this model and index know?

Two tests, each turned into a tail probability over *validation* chest films (patients the
model never trained on), so a threshold reads as "this share of real chest films look
less typical than the query":

* pixels -> "not a chest radiograph": the standardized image is shrunk to a 32x32
  thumbnail, z-scored, and scored by its distance to the training films' thumbnails
  under a probabilistic PCA (Mahalanobis inside the top components plus the residual
  off them), and by its fine structure (mean absolute Laplacian of the standardized image,
  floored at half the smoothest validation film's: a film has edges everywhere, a smooth
  gradient has none, and z-scoring alone cannot tell a vignetted gradient from a film). Hips,
  teeth, a dog's thorax, test patterns, noise and gradients fall in a tail of one of the two. A blank or uniform image is
  flagged before any model, and so is a colour picture (``chroma`` of the decoded file above
  ``MAX_CHROMA``: films are grey, at most with a few coloured marks). A grey-scale photograph
  is left to the two tests and the embedding's, which catch most but not all of them.
* embedding -> "unlike anything in this index": the cosine similarity of the query's
  embedding to its nearest indexed case. A chest film the encoder has never seen the
  like of has no close neighbour, and its vote would be noise.

Each test flags below ``alpha`` (0.5%) of its validation tail, so at most 1% of the
validation films that set the thresholds are flagged, and about 2% of unseen ones (measured
by ``cxr calibrate`` on a held-out half of the validation patients); the in-distribution ``score`` is the smaller of the two
tail probabilities (1.0 = as typical as the most typical validation film). The fitted
guard is a small ``.npz`` next to the model (``<model>.guard.npz``, written by
``cxr calibrate``) and records the model's sha256, so a guard never judges another
model's embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Side of the pixel thumbnail the guard scores (32x32: shape and layout, no texture).
THUMB = 32
#: Mean colourfulness (``embed.image.chroma``) above which an image is a colour picture, not a film.
MAX_CHROMA = 0.08
#: Tail probability below which each test flags (two tests: <= 1% of the threshold films flagged).
DEFAULT_ALPHA = 0.005
#: Texture below this share of the smoothest validation film's is no film (a fixed floor, not a
#: tail: sources differ in sharpness, and a 0.5% tail of a few hundred films is too noisy a bound).
TEXTURE_FLOOR = 0.5
#: A standardized image whose grey levels vary less than this (std, [0,1] scale) is blank or uniform.
UNIFORM_STD = 0.02

NOT_CXR = "not a chest radiograph"
UNLIKE_INDEX = "unlike anything in this index"


def guard_path(model_path: str | Path) -> Path:
    """Where the guard of a checkpoint lives: beside it, ``<stem>.guard.npz``."""
    p = Path(model_path)
    return p.with_name(p.stem + ".guard.npz")


def thumbnails(images: np.ndarray) -> np.ndarray:
    """Standardized images [N,S,S] (uint8 or [0,1]) -> z-scored 32x32 thumbnails [N,1024] float32.

    A uniform image has no contrast to z-score and gives a zero row (:func:`is_uniform` catches it).
    """
    import cv2

    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    out = np.empty((len(arr), THUMB * THUMB), np.float32)
    for i, img in enumerate(arr):
        t = cv2.resize(img.astype(np.float32) / scale, (THUMB, THUMB), interpolation=cv2.INTER_AREA).ravel()
        sd = float(t.std())
        out[i] = (t - t.mean()) / sd if sd > 1e-6 else 0.0
    return out


def texture(images: np.ndarray) -> np.ndarray:
    """Mean absolute Laplacian [N] of standardized images (uint8 or [0,1]): how much fine structure they hold."""
    import cv2

    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    return np.array([float(np.abs(cv2.Laplacian(a.astype(np.float32) / scale, cv2.CV_32F, ksize=3)).mean())
                     for a in arr])


def is_uniform(image: np.ndarray) -> bool:
    """True for a blank, constant or nearly constant standardized image."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.max() > 1.0:
        arr = arr / 255.0
    return float(arr.std()) < UNIFORM_STD


@dataclass
class Verdict:
    """The guard's answer for one query."""

    score: float
    flagged: bool
    reason: str | None
    pixel_score: float | None
    neighbour_score: float | None
    nearest_similarity: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"score": self.score, "flagged": self.flagged, "reason": self.reason,
                "pixel_score": self.pixel_score, "neighbour_score": self.neighbour_score,
                "nearest_similarity": self.nearest_similarity}


def _tail_above(ref_sorted: np.ndarray, value: float) -> float:
    """Share of reference values >= value (ref sorted ascending): how often real films are this atypical."""
    n = len(ref_sorted)
    return float((n - np.searchsorted(ref_sorted, value, side="left")) / n)


def _tail_below(ref_sorted: np.ndarray, value: float) -> float:
    """Share of reference values <= value."""
    return float(np.searchsorted(ref_sorted, value, side="right") / len(ref_sorted))


@dataclass
class OODGuard:
    """A fitted guard (see module doc); build with :meth:`fit`, persist with :meth:`save`/:meth:`load`."""

    model_sha256: str
    mean: np.ndarray          # [1024] mean training thumbnail
    components: np.ndarray    # [m,1024] principal axes of training thumbnails
    eigvals: np.ndarray       # [m] their variances
    resid_var: float          # mean variance off the m axes (probabilistic PCA noise)
    pixel_ref: np.ndarray     # sorted pixel distances of the validation films (threshold set)
    nn_ref: np.ndarray        # sorted nearest-training-film similarities of the validation films
    alpha: float = DEFAULT_ALPHA
    texture_ref: np.ndarray | None = None  # sorted texture of the validation films (lower tail flags)
    reference: np.ndarray | None = None  # [n,D] unit embeddings of the training sample (fp16 on disk)

    @classmethod
    def fit(cls, train_thumbs: np.ndarray, val_thumbs: np.ndarray, val_nn_sims: np.ndarray, *,
            model_sha256: str, n_components: int = 32, alpha: float = DEFAULT_ALPHA,
            val_texture: np.ndarray | None = None, reference: np.ndarray | None = None) -> OODGuard:
        """Pixel model from training films; both thresholds from validation films (never the same films)."""
        x = np.asarray(train_thumbs, np.float64)
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        var = s**2 / max(len(x) - 1, 1)
        m = int(min(n_components, len(var) - 1))
        resid = float(var[m:].sum() / max(x.shape[1] - m, 1))
        guard = cls(model_sha256, mean.astype(np.float32), vt[:m].astype(np.float32), var[:m].astype(np.float32),
                    max(resid, 1e-6), np.zeros(1), np.zeros(1), float(alpha),
                    None if val_texture is None else np.sort(np.asarray(val_texture, np.float64)),
                    None if reference is None else np.asarray(reference, np.float32))
        guard.pixel_ref = np.sort(guard.pixel_distance(val_thumbs))
        guard.nn_ref = np.sort(np.asarray(val_nn_sims, np.float64))
        return guard

    def pixel_distance(self, thumbs: np.ndarray) -> np.ndarray:
        """Probabilistic-PCA distance of thumbnails [N,1024] to the training films (larger = less chest-like)."""
        d = np.asarray(thumbs, np.float64) - self.mean
        coef = d @ self.components.T.astype(np.float64)
        inside = (coef**2 / self.eigvals).sum(axis=1)
        off = ((d**2).sum(axis=1) - (coef**2).sum(axis=1)) / self.resid_var
        return (inside + off) / d.shape[1]

    def pixel_tail(self, thumb: np.ndarray, tex: float | None) -> float:
        """Tail probability of the pixel test: the rarer of the subspace distance and the texture."""
        if self.texture_ref is not None and tex is not None and tex < TEXTURE_FLOOR * float(self.texture_ref[0]):
            return 0.0
        return _tail_above(self.pixel_ref, float(self.pixel_distance(np.asarray(thumb)[None])[0]))

    def nearest_reference(self, vector: np.ndarray) -> float | None:
        """Cosine similarity of a unit embedding to its nearest training film of the fitted sample."""
        if self.reference is None or not len(self.reference):
            return None
        return float((self.reference @ np.asarray(vector, np.float32).ravel()).max())

    def check(self, image: np.ndarray | None, nearest_similarity: float | None,
              chroma: float | None = None) -> Verdict:
        """Judge one query from its standardized image (None for an id query), its nearest indexed
        neighbour's similarity (None when the index is empty) and the decoded file's colourfulness."""
        pix = nn = None
        if chroma is not None and chroma > MAX_CHROMA:
            return Verdict(0.0, True, NOT_CXR, 0.0, None, nearest_similarity)
        if image is not None:
            if is_uniform(image):
                return Verdict(0.0, True, NOT_CXR, 0.0, None, nearest_similarity)
            pix = self.pixel_tail(thumbnails(image)[0], float(texture(image)[0]))
        if nearest_similarity is not None:
            nn = _tail_below(self.nn_ref, float(nearest_similarity))
        reason = None
        if pix is not None and pix < self.alpha:
            reason = NOT_CXR
        elif nn is not None and nn < self.alpha:
            reason = UNLIKE_INDEX
        parts = [v for v in (pix, nn) if v is not None]
        score = min(parts) if parts else 1.0
        return Verdict(round(score, 4), reason is not None, reason, pix, nn, nearest_similarity)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        np.savez_compressed(path, model_sha256=np.array(self.model_sha256), mean=self.mean,
                            components=self.components.astype(np.float16), eigvals=self.eigvals,
                            resid_var=np.array(self.resid_var), pixel_ref=self.pixel_ref.astype(np.float32),
                            nn_ref=self.nn_ref.astype(np.float32), alpha=np.array(self.alpha),
                            texture_ref=(np.zeros(0) if self.texture_ref is None else self.texture_ref).astype(np.float32),
                            reference=(np.zeros((0, 0)) if self.reference is None else self.reference).astype(np.float16))
        return path

    @classmethod
    def load(cls, path: str | Path) -> OODGuard:
        with np.load(Path(path), allow_pickle=False) as z:
            return cls(str(z["model_sha256"]), z["mean"].astype(np.float32), z["components"].astype(np.float32),
                       z["eigvals"].astype(np.float32), float(z["resid_var"]), z["pixel_ref"].astype(np.float64),
                       z["nn_ref"].astype(np.float64), float(z["alpha"]),
                       z["texture_ref"].astype(np.float64) if z["texture_ref"].size else None,
                       z["reference"].astype(np.float32) if z["reference"].size else None)
