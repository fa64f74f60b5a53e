"""Training settings: one typed model resolved from CLI > pipeline ``train:`` > preset > default.

A model preset (``models/<name>.yaml``) may carry hyper-parameters under ``train:``; when the
preset is named (``--model`` or the pipeline), they sit between the pipeline YAML and the built-in
defaults (see :func:`preset_defaults`). Settings left at ``None`` are chosen by the recipe from the
store's fingerprint (:mod:`geotiler.train.recipe`), which prints and saves what it chose.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from geotiler.config import StageSettings

OptimizerName = Literal["adam", "adamw", "sgd"]
LrScheduleName = Literal["none", "plateau", "step", "cosine", "onecycle"]
DeviceName = Literal["auto", "cpu", "cuda"]
ReaderName = Literal["auto", "native", "tensorstore", "zarrs", "zarr"]
NormalisationName = Literal["robust", "store"]
PIXEL_MODEL = "pixel-gbm"
"""``--model pixel-gbm``: the pixel baseline is the model (no network is trained)."""


class TrainSettings(StageSettings):
    """Everything ``geotiler train`` can be told (section ``train`` of a pipeline YAML)."""

    model: str | None = Field(
        default=None, description="preset name, preset YAML or pixel-gbm; None: the recipe's"
    )
    epochs: int | None = Field(default=None, ge=1, description="None: train to a time budget")
    time: str | None = Field(
        default=None, description="time budget (90s, 10m, 1h or auto); None: auto unless epochs"
    )
    batch_size: int | None = Field(
        default=None, ge=1, description="None: the recipe's, from the model and the memory"
    )
    lr: float | None = Field(
        default=None, gt=0, description="None: the recipe's, from the model and the batch"
    )
    weight_decay: float = Field(default=1e-4, ge=0)
    optimizer: OptimizerName = "adamw"
    momentum: float = Field(default=0.9, ge=0, lt=1, description="sgd only")
    lr_schedule: LrScheduleName = "onecycle"
    step_size: int = Field(default=10, ge=1, description="step schedule: epochs per decay")
    gamma: float = Field(default=0.1, gt=0, le=1, description="step/plateau decay factor")
    patience: int | None = Field(
        default=None, ge=0, description="plateau: epochs without gain before decaying; None: auto"
    )
    loss: str | None = Field(
        default=None, description="ce, dice, focal[:gamma], jaccard or sums; None: the recipe's"
    )
    class_weights: bool | None = Field(
        default=None, description="weight ce/focal by the store's; None: the recipe decides"
    )
    normalisation: NormalisationName = Field(
        default="robust", description="robust: percentile clip, cloud-proof mean/std; store: its"
    )
    baseline: bool = Field(default=True, description="fit the pixel baseline beside the network")
    baseline_pixels: int = Field(default=100_000, ge=100, description="pixels the baseline samples")
    ensemble: bool = Field(
        default=True, description="let validation choose network, baseline or their average"
    )
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

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        # Checkpoints, presets and pipelines written before the rename say "scheduler" (now the
        # Dask scheduler's name in rescale/tile only); the new name wins when both are there.
        if isinstance(data, dict) and "scheduler" in data:
            data = dict(data)
            legacy = data.pop("scheduler")
            data.setdefault("lr_schedule", legacy)
        return data

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str | None) -> str | None:
        from geotiler.train.losses import parse_loss_spec

        if value is not None:
            parse_loss_spec(value)
        return value

    @field_validator("time")
    @classmethod
    def _known_time(cls, value: str | None) -> str | None:
        from geotiler.train.budget import parse_duration

        if value is not None and value != "auto":
            parse_duration(value)
        return value


def preset_defaults(model: str | None) -> dict[str, Any]:
    """The ``train:`` section of a named preset (empty for none, or for ``pixel-gbm``)."""
    if model is None or model == PIXEL_MODEL:
        return {}
    from geotiler.train.models import load_preset

    return dict(load_preset(model).train)
