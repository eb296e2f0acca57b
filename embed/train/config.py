"""TrainConfig: every hyperparameter of a run, read from YAML or TOML and saved beside it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from embed.errors import CXRError
from embed.split import DEFAULT_SEED, DEFAULT_SPLIT_SCHEME, DEFAULT_VAL_FRACTION


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (see embed/configs/*.yaml for examples)."""

    model: str = "cxr_resnet18"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    image_size: int = 160
    standardize: dict[str, Any] = field(default_factory=dict)  # StandardizeConfig fields (size is image_size)
    label_scheme: str = "pathology"
    min_class_count: int = 4
    epochs: int = 10
    batch_size: int = 48
    m_per_class: int = 8
    steps_per_epoch: int | None = None  # None: one pass over the training images
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    ms_alpha: float = 2.0
    ms_beta: float = 50.0
    ms_base: float = 0.5
    miner_epsilon: float = 0.1
    aux_ce_weight: float = 1.0
    instance_weight: float = 0.0  # embed.train.instance: NT-Xent between two augmented views (0 = off)
    instance_temperature: float = 0.1
    label_smoothing: float = 0.1
    val_fraction: float = DEFAULT_VAL_FRACTION
    seed: int = DEFAULT_SEED
    split_scheme: str = DEFAULT_SPLIT_SCHEME  # embed.split: "source_id" reproduces with any pseudonym key
    patience: int = 4
    max_minutes: float | None = None
    max_train_images: int | None = None  # subsample (by patient-split order) for quick experiments
    num_workers: int = 0
    threads: int | None = None  # torch CPU threads (None: torch's default)
    device: str = "auto"
    amp: bool = True
    augment: dict[str, Any] = field(default_factory=dict)
    eval_k: int = 10
    release_half: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CXRError(f"unknown training option(s) {unknown}; valid options: {sorted(known)}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read a .yaml/.yml or .toml file."""
        p = Path(path)
        if not p.is_file():
            raise CXRError(f"training config {p} not found; see embed/configs/ for examples")
        text = p.read_text()
        try:
            if p.suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text) or {}
        except Exception as exc:  # noqa: BLE001 - any parse error is a user error
            raise CXRError(f"could not parse {p}: {exc}") from exc
        if not isinstance(data, dict):
            raise CXRError(f"{p} must hold a mapping of option: value")
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        import yaml

        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
