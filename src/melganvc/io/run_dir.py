"""The run folder's layout, owned in one place: training writes it, resuming, the web UI's
Training tab and conversion (``--ckpt RUN``) read it.

    RUN/config.yaml      the resolved config (also stored inside every checkpoint)
    RUN/checkpoint.pt    the latest training checkpoint (atomic writes)
    RUN/best.pt          with train.select_best: the generator of the best-scoring eval, which
                         conversion of RUN uses (generator only; resuming reads checkpoint.pt)
    RUN/logs/            TensorBoard events
    RUN/cache/{a,b}/     the prepared mels of the two domains
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from melganvc.config import Config, to_dict
from melganvc.io.checkpoint import BEST_NAME, CHECKPOINT_NAME
from melganvc.io.files import atomic_write_text, remove_stale_temps

CONFIG_NAME = "config.yaml"


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT_NAME

    @property
    def best(self) -> Path:
        return self.root / BEST_NAME

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def cache(self, domain: str) -> Path:
        """The prepared corpus of one domain (``a`` or ``b``)."""
        return self.root / "cache" / domain

    def has_run(self) -> bool:
        return self.checkpoint.exists()

    def save_config(self, cfg: Config) -> None:
        """Create the folder, clear temps a killed writer left, write the config (atomic)."""
        self.root.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.root, CHECKPOINT_NAME, BEST_NAME, CONFIG_NAME)
        atomic_write_text(self.config, yaml.safe_dump(to_dict(cfg), sort_keys=False))
