"""Training settings: one typed model resolved from CLI > pipeline ``train:`` > preset > default.

A model preset (``models/<name>.yaml``) may carry hyper-parameters under ``train:``; they sit
between the pipeline YAML and the built-in defaults (see :func:`geotiler.train.models.load_preset`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from geotiler.config import StageSettings

OptimizerName = Literal["adam", "adamw", "sgd"]
SchedulerName = Literal["none", "plateau", "step", "cosine", "onecycle"]
DeviceName = Literal["auto", "cpu", "cuda"]
ReaderName = Literal["auto", "native", "tensorstore", "zarrs", "zarr"]


class TrainSettings(StageSettings):
    """Everything ``geotiler train`` can be told (section ``train`` of a pipeline YAML)."""

    model: str = Field(default="unet-small", description="preset name or path to a preset YAML")
    epochs: int = Field(default=12, ge=1)
    batch_size: int = Field(default=4, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    optimizer: OptimizerName = "adamw"
    momentum: float = Field(default=0.9, ge=0, lt=1, description="sgd only")
    scheduler: SchedulerName = "onecycle"
    step_size: int = Field(default=10, ge=1, description="step scheduler: epochs per decay")
    gamma: float = Field(default=0.1, gt=0, le=1, description="step/plateau decay factor")
    loss: str = Field(default="ce+dice", description="ce, dice, focal[:gamma], jaccard or sums")
    class_weights: bool = Field(default=False, description="weight ce/focal by the store's")
    balance: bool = Field(default=True, description="sample by the store's sampling weights")
    augment: bool = Field(default=True, description="random flips and 90-degree rotations")
    early_stopping: int = Field(default=0, ge=0, description="epochs without gain; 0 = off")
    workers: int = Field(default=0, ge=0)
    reader: ReaderName = Field(
        default="auto", description="how tiles are read (geotiler.tiles.fastread); auto: fastest"
    )
    device: DeviceName = "auto"
    amp: bool = Field(default=True, description="mixed precision on CUDA")
    seed: int = 0
    encoder_weights: str | None = Field(
        default=None, description="local pretrained encoder (.pth or .safetensors)"
    )
    freeze_encoder: int = Field(default=0, ge=0, description="epochs the encoder stays frozen")
    encoder_lr_scale: float = Field(
        default=1.0, gt=0, le=1, description="the encoder's learning rate: lr x this"
    )
    max_train_tiles: int | None = Field(
        default=None, ge=1, description="tiles drawn per epoch (default: the train split's size)"
    )

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str) -> str:
        from geotiler.train.losses import parse_loss_spec

        parse_loss_spec(value)
        return value
