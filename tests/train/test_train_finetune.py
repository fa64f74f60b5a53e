"""Fine-tuning: a frozen encoder, its own learning rate, pretrained weights through the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from test_train_weights import torchvision_resnet18_state
from typer.testing import CliRunner

from geotiler.cli import app
from geotiler.errors import InputError
from geotiler.train.settings import TrainSettings
from geotiler.train.trainer import Callbacks, EpochReport, train

SMALL_RESNET = (
    "architecture: unet-resnet18\narguments: {decoder_widths: [8, 8, 8, 8, 8]}\n"
    "train: {batch_size: 8, lr: 0.01}\n"
)


@pytest.fixture
def resnet_preset(tmp_path: Path) -> str:
    path = tmp_path / "small-resnet.yaml"
    path.write_text(SMALL_RESNET)
    return str(path)


def _split(state: dict[str, torch.Tensor]) -> tuple[dict[str, Any], dict[str, Any]]:
    encoder = {k: v for k, v in state.items() if k.startswith("encoder.")}
    return encoder, {k: v for k, v in state.items() if not k.startswith("encoder.")}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_frozen_encoder_stays_fixed_then_trains(
    fake_store: Path, resnet_preset: str, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    states: list[dict[str, torch.Tensor]] = []

    def snapshot(report: EpochReport) -> None:
        states.append(torch.load(run / "last.pt", weights_only=True)["state_dict"])

    settings = TrainSettings(
        model=resnet_preset, epochs=3, batch_size=8, lr=0.01, seed=3, freeze_encoder=2,
        lr_schedule="none", augment=False, max_train_tiles=8,
    )  # fmt: skip
    train(fake_store, run, settings, callbacks=Callbacks(on_epoch_end=snapshot))
    torch.manual_seed(3)  # the trainer builds the model right after seeding
    from geotiler.train.models import load_preset

    initial = load_preset(resnet_preset).build(3, 4).state_dict()
    (enc0, dec0), (enc1, dec1), (enc2, dec2), (enc3, _) = map(_split, [initial, *states])
    assert _same(enc0, enc1) and _same(enc1, enc2)  # weights and batch-norm statistics
    assert not _same(dec0, dec1) and not _same(dec1, dec2)  # the decoder trained meanwhile
    changed = [k for k in enc3 if not torch.equal(enc3[k], enc2[k])]
    assert "encoder.conv1.weight" in changed and "encoder.bn1.running_mean" in changed


def test_the_encoder_gets_its_own_learning_rate(
    fake_store: Path, resnet_preset: str, tmp_path: Path
) -> None:
    settings = TrainSettings(
        model=resnet_preset,
        epochs=1,
        lr=0.02,
        encoder_lr_scale=0.1,
        lr_schedule="none",
        max_train_tiles=8,
    )
    train(fake_store, tmp_path / "run", settings)
    raw = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    groups = raw["resume"]["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([0.02, 0.002])
    from geotiler.train.models import load_preset

    encoder = load_preset(resnet_preset).build(3, 4).encoder  # type: ignore[union-attr]
    assert len(groups[1]["params"]) == len(list(encoder.parameters()))


def test_encoder_options_need_a_model_with_an_encoder(fake_store: Path, tmp_path: Path) -> None:
    settings = TrainSettings(model="unet-tiny", epochs=1, freeze_encoder=1)
    with pytest.raises(InputError, match="--freeze-encoder need a model with an encoder"):
        train(fake_store, tmp_path / "run", settings)


def test_cli_loads_imagenet_weights_by_band_name_and_records_the_mapping(
    runner: CliRunner, real_store: Path, resnet_preset: str, tmp_path: Path
) -> None:
    state = torchvision_resnet18_state()
    weights = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, weights)
    run = tmp_path / "run"
    args = [
        "train", str(real_store), "-m", resnet_preset, "--epochs", "2", "-o", str(run),
        "--encoder-weights", str(weights), "--freeze-encoder", "1", "--encoder-lr-scale", "0.1",
        "--max-train-tiles", "8",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "B02<-blue, B03<-green, B04<-red" in result.output
    raw = torch.load(run / "best.pt", weights_only=True)
    record = raw["encoder_weights"]
    assert record["mapping"] == {"B02": "blue", "B03": "green", "B04": "red"}
    assert record["file"] == str(weights) and record["std"] == [0.229, 0.224, 0.225]
    assert raw["settings"]["freeze_encoder"] == 1
    resumed = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "3", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert torch.load(run / "last.pt", weights_only=True)["encoder_weights"] == record


def test_cli_missing_weights_is_one_line(
    runner: CliRunner, real_store: Path, resnet_preset: str, tmp_path: Path
) -> None:
    missing = tmp_path / "resnet50_sentinel2_all_moco-df8b932e.pth"
    result = runner.invoke(
        app,
        ["train", str(real_store), "-m", resnet_preset, "-o", str(tmp_path / "r"),
         "--encoder-weights", str(missing)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "encoder weights not found" in result.output and "Traceback" not in result.output


def test_segformer_b0_trains_and_predicts_through_the_cli(
    runner: CliRunner, real_store: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ["train", str(real_store), "-m", "segformer-b0", "--epochs", "2", "-o", str(run)]
    result = runner.invoke(app, [*args, "--batch-size", "8", "--lr", "0.002"])
    assert result.exit_code == 0, result.output
    assert "best epoch" in result.output
    raw = torch.load(run / "best.pt", weights_only=True)
    assert raw["model"]["architecture"] == "segformer-b0"
    assert "segformer.encoder.block.0.0.attention.self.query.weight" in raw["state_dict"]
    scene = real_store.parent / "scene.tif"
    out = tmp_path / "map.tif"
    predicted = runner.invoke(
        app, ["predict", str(scene), "-o", str(out), "--model", str(run / "best.pt"), "-q"]
    )
    assert predicted.exit_code == 0, predicted.output
    assert out.is_file()
