"""Models: output shapes at odd tile sizes and any band count, presets, TorchScript."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geotiler.errors import CatalogError
from geotiler.train.models import MODELS, available_presets, encoder_of, get_model, load_preset

REPO_PRESETS = Path(__file__).resolve().parents[2] / "models"


def _out_shape(model: torch.nn.Module, bands: int, size: int) -> tuple[int, ...]:
    model.eval()
    with torch.no_grad():
        return tuple(model(torch.randn(1, bands, size, size)).shape)


@pytest.mark.parametrize("size", [300, 37])
def test_unet_any_depth_keeps_the_tile_size(size: int) -> None:
    for widths in [(4, 8), (4, 8, 16, 32, 64)]:
        model = get_model("unet", in_channels=5, num_classes=7, widths=widths)
        assert _out_shape(model, 5, size) == (1, 7, size, size)


@pytest.mark.parametrize("name", ["unet-resnet18", "unet-resnet50", "deeplabv3plus-resnet50"])
def test_resnet_models_keep_a_300_px_tile(name: str) -> None:
    model = get_model(name, in_channels=10, num_classes=13)
    assert _out_shape(model, 10, 300) == (1, 13, 300, 300)


NEW_MODELS = [
    "unetplusplus-resnet34",
    "segformer-b0",
    pytest.param("deeplabv3-resnet50", marks=pytest.mark.slow),
    pytest.param("segformer-b1", marks=pytest.mark.slow),
    pytest.param("unet-resnet101", marks=pytest.mark.slow),
    pytest.param("deeplabv3-resnet101", marks=pytest.mark.slow),
    pytest.param("segformer-b2", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name", NEW_MODELS)
def test_new_models_take_any_bands_and_keep_odd_tile_sizes(name: str) -> None:
    # Band count and tile size act on different layers (first convolution vs strides and
    # padding), so three pairs cover 1, 4 and 13 bands and 300 and 257 px.
    torch.manual_seed(0)
    for bands, size in ((1, 300), (4, 257), (13, 257)):
        model = get_model(name, in_channels=bands, num_classes=7)
        assert _out_shape(model, bands, size) == (1, 7, size, size), (bands, size)


@pytest.mark.parametrize("name", [n for n in MODELS if "101" not in n and n != "segformer-b2"])
def test_every_model_with_an_encoder_names_it(name: str) -> None:
    model = get_model(name, in_channels=2, num_classes=2)
    encoder = encoder_of(model)
    assert (encoder is None) == (name == "unet")
    if encoder is not None:
        share = sum(p.numel() for p in encoder.parameters())
        assert 0 < share < sum(p.numel() for p in model.parameters())


def test_unetplusplus_has_the_nested_nodes_of_the_paper() -> None:
    model = get_model("unetplusplus-resnet34", in_channels=3, num_classes=2)
    names = {key.split(".")[2] for key in model.state_dict() if key.startswith("decoder.blocks.")}
    # X(d, l) for 0 <= d <= l <= 3, plus the final upsampling node X(0, 4).
    nodes = {f"x_{d}_{layer}" for layer in range(4) for d in range(layer + 1)}
    assert names == nodes | {"x_0_4"}
    state = model.state_dict()
    # X(0, 3) sees X(0, 2) (64) upsampled beside X(1..3, 3) and the stride-2 feature (4 x 64).
    assert state["decoder.blocks.x_0_3.conv1.0.weight"].shape == (32, 64 + 4 * 64, 3, 3)
    assert state["segmentation_head.0.weight"].shape == (2, 16, 3, 3)


@pytest.mark.parametrize("name", ["unetplusplus-resnet34", "segformer-b0", "deeplabv3-resnet50"])
def test_models_compile_to_torchscript(name: str) -> None:
    model = get_model(name, in_channels=4, num_classes=3).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 4, 67, 67)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


def test_resnet34_decoder_widths_are_configurable() -> None:
    model = get_model("unet-resnet34", in_channels=2, num_classes=3, decoder_widths=(8,) * 5)
    assert _out_shape(model, 2, 45) == (1, 3, 45, 45)


def test_every_repository_preset_builds() -> None:
    names = sorted(p.stem for p in REPO_PRESETS.glob("*.yaml"))
    assert {"unet-small", "unet", "unet-resnet18", "unet-resnet34", "unet-resnet50"} <= set(names)
    for name in names:
        preset = load_preset(REPO_PRESETS / f"{name}.yaml")
        assert preset.name == name
        assert isinstance(preset.build(4, 5), torch.nn.Module)
    assert "unet-small" in available_presets()


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(
        CatalogError, match=r"unknown model preset 'unet-huge' \(known: .*unet-small"
    ):
        load_preset("unet-huge")


def test_a_preset_with_a_typo_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("architecture: unet\narguments: {widths: [4, 8]}\ntrian: {lr: 1}\n")
    with pytest.raises(CatalogError, match="trian: unknown key"):
        load_preset(path)
