"""Fine-tuning a pretrained encoder: loading it, freezing it for the first epochs, its own LR.

``--encoder-weights FILE`` loads pretrained weights (mapped onto the store's bands by name),
``--freeze-encoder N`` keeps the encoder fixed for the first N epochs (its parameters get no
gradient and its batch-norm statistics stay as loaded) so the randomly initialised decoder can
settle before it disturbs the pretrained features, and ``--encoder-lr-scale S`` trains the encoder
at S times the learning rate afterwards (see :func:`geotiler.train.optim.parameter_groups`).
"""

from __future__ import annotations

import logging

from torch import nn

from geotiler.errors import InputError
from geotiler.train.models import encoder_of
from geotiler.train.settings import TrainSettings

log = logging.getLogger(__name__)


class EncoderControl:
    """The model's encoder and whether it is frozen in the current epoch."""

    def __init__(self, net: nn.Module, settings: TrainSettings, model_name: str) -> None:
        self.encoder = encoder_of(net)
        self.freeze_epochs = settings.freeze_encoder
        self.frozen = False
        wants = [
            flag
            for flag, on in (
                ("--freeze-encoder", settings.freeze_encoder > 0),
                ("--encoder-lr-scale", settings.encoder_lr_scale != 1.0),
                ("--encoder-weights", settings.encoder_weights is not None),
            )
            if on
        ]
        if wants and self.encoder is None:
            raise InputError(
                f"{', '.join(wants)} need a model with an encoder (ResNet or SegFormer presets "
                f"such as unet-resnet34 or segformer-b0); {model_name!r} has none"
            )

    def set_epoch(self, epoch: int) -> bool:
        """Freeze or unfreeze for ``epoch`` (1-based); True when the state changed."""
        frozen = self.encoder is not None and epoch <= self.freeze_epochs
        if frozen == self.frozen or self.encoder is None:
            return False
        self.encoder.requires_grad_(not frozen)
        self.frozen = frozen
        log.info("epoch %d: encoder %s", epoch, "frozen" if frozen else "trainable")
        return True

    def train_mode(self) -> None:
        """After ``model.train()``: a frozen encoder keeps its batch-norm statistics."""
        if self.frozen and self.encoder is not None:
            self.encoder.eval()
