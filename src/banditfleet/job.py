"""The recurring-job specification, shaped like the reference's ``Job``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Job"]


@dataclass(frozen=True, unsafe_hash=True)
class Job:
    """A recurring training job: what it trains, to which target, from which default.

    Hashable and compared on every field but ``command``, like the reference,
    so it can key any optimizer. Any other hashable works as a key too.

    Attributes:
        dataset: Dataset name.
        network: Model name.
        optimizer: Training optimizer name, e.g. ``"adam"``.
        target_metric: Validation metric the job must reach.
        max_epochs: Epochs after which a run is stopped.
        default_bs: The user's batch size (b0); pruning starts from it.
        default_lr: Learning rate that goes with ``default_bs``.
        workdir: Directory to launch ``command`` in.
        command: Command template (not part of equality or the hash).
    """

    dataset: str
    network: str
    optimizer: str
    target_metric: float
    max_epochs: int
    default_bs: int | None = None
    default_lr: float | None = None
    workdir: str | None = None
    command: list[str] | None = field(default=None, hash=False, compare=False)

    def __str__(self) -> str:
        bs = f",bs{self.default_bs}" if self.default_bs is not None else ""
        return f"Job({self.dataset},{self.network},{self.optimizer},{self.target_metric}{bs}~{self.max_epochs})"

    def to_logdir(self) -> str:
        """A directory name that spells out the job."""
        return (
            f"{self.dataset}+{self.network}+bs{self.default_bs}+{self.optimizer}+lr{self.default_lr}"
            f"+tm{self.target_metric}+me{self.max_epochs}"
        )

    def filter_df(self, df: Any) -> Any:
        """Rows of a pandas trace DataFrame that belong to this job."""
        mask = (
            (df.dataset == self.dataset)
            & (df.network == self.network)
            & (df.optimizer == self.optimizer)
            & (df.target_metric == self.target_metric)
        )
        return df.loc[mask]

    def gen_command(self, batch_size: int, learning_rate: float, seed: int, rec_i: int) -> list[str]:
        """Fill the command template's placeholders for one launch."""
        if not self.command:
            raise ValueError(f"{self}: no command template was given")
        values = {
            "{bs}": batch_size,
            "{batch_size}": batch_size,
            "{lr}": learning_rate,
            "{learning_rate}": learning_rate,
            "{seed}": seed,
            "{epoch}": self.max_epochs,
            "{epochs}": self.max_epochs,
            "{slice_number}": rec_i,
            "{target_metric}": self.target_metric,
        }
        return [str(values[piece]) if piece in values else piece for piece in self.command]

    def scale_lr(self, batch_size: int) -> float:
        """Learning rate for ``batch_size``: square-root scaling for adaptive
        optimizers (Adam, AdamW, Adadelta), linear scaling for SGD."""
        if not self.default_bs or not self.default_lr:
            raise ValueError(f"{self}: default_bs and default_lr are needed to scale the learning rate")
        name = self.optimizer.lower()
        if name in ("adam", "adadelta", "adamw"):
            return self.default_lr * math.sqrt(batch_size / self.default_bs)
        if name == "sgd":
            return self.default_lr * batch_size / self.default_bs
        raise NotImplementedError(f"learning-rate scaling for optimizer {self.optimizer!r} is not supported")
