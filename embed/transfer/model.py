"""The three prognosis pipelines: image features, tabular features, both.

Why these choices (n is ~100 patients with ~20-60 events, features 256-D):

* Image features are standardised, then reduced by PCA to ``n_components``
  (default 10), then fed to an L2 logistic regression with a *fixed* C
  (default 0.1). Choosing C by inner CV was rejected: with ~15 events per
  training fold the inner folds hold 3-5 events each, so the chosen C is noise
  and costs variance we cannot afford. PCA + a small C is a strong, stable
  prior ("the outcome lives in the main directions of variation").
* Tabular columns are imputed (median for numbers, most frequent for
  categories) *with a missing-indicator*, then standardised / one-hot encoded.
  Every statistic (medians, means, PCA axes) is fitted inside the Pipeline, so
  cross-validation refits it on each training fold: no leakage from the test fold.
* ``class_weight`` stays None so the probabilities remain calibrated to the
  cohort's prevalence (the calibration plot is meaningful).
"""

from __future__ import annotations

from dataclasses import dataclass

from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

MODEL_KINDS = ("image", "tabular", "image+tabular")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters, fixed a priori (see module docstring)."""

    C: float = 0.1
    n_components: int = 10
    max_iter: int = 2000

    def to_dict(self) -> dict:
        return {"C": self.C, "n_components": self.n_components, "max_iter": self.max_iter,
                "penalty": "l2", "solver": "lbfgs", "imputer": "median/most_frequent + missing indicator"}


class _CappedPCA(PCA):
    """PCA whose n_components is capped at what the training fold allows (rows-1, columns)."""

    def fit(self, X, y=None):
        self._requested = self.n_components
        self.n_components = max(1, min(self.n_components, X.shape[0] - 1, X.shape[1]))
        try:
            return super().fit(X, y)
        finally:
            self.n_components = self._requested

    def fit_transform(self, X, y=None):
        self._requested = self.n_components
        self.n_components = max(1, min(self.n_components, X.shape[0] - 1, X.shape[1]))
        try:
            return super().fit_transform(X, y)
        finally:
            self.n_components = self._requested


def _image_branch(cfg: ModelConfig) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("pca", _CappedPCA(n_components=cfg.n_components,
                                                                      svd_solver="full"))])


def _numeric_branch() -> Pipeline:
    return Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True,
                                              keep_empty_features=True)),
                     ("scale", StandardScaler())])


def _categorical_branch() -> Pipeline:
    return Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="__missing__",
                                              add_indicator=False)),
                     ("onehot", OneHotEncoder(handle_unknown="ignore"))])


def build_pipeline(
    kind: str,
    image_columns: list[str],
    numeric_columns: list[str],
    categorical_columns: list[str],
    cfg: ModelConfig | None = None,
) -> Pipeline:
    """An unfitted Pipeline(features -> LogisticRegression) for one of MODEL_KINDS."""
    cfg = cfg or ModelConfig()
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose from {MODEL_KINDS}")
    parts = []
    if kind in ("image", "image+tabular"):
        if not image_columns:
            raise ValueError("no image columns")
        parts.append(("image", _image_branch(cfg), list(image_columns)))
    if kind in ("tabular", "image+tabular"):
        if numeric_columns:
            parts.append(("numeric", _numeric_branch(), list(numeric_columns)))
        if categorical_columns:
            parts.append(("categorical", _categorical_branch(), list(categorical_columns)))
        if not (numeric_columns or categorical_columns):
            raise ValueError("no tabular columns")
    features = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)
    clf = LogisticRegression(C=cfg.C, max_iter=cfg.max_iter)
    return Pipeline([("features", features), ("clf", clf)])


def kinds_for(has_tabular: bool) -> list[str]:
    """The models to run: all three with tabular columns, image only without."""
    return list(MODEL_KINDS) if has_tabular else ["image"]
