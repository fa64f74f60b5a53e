"""Models: output shapes at odd tile sizes, presets, torchvision-compatible ResNet encoders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geotiler.errors import CatalogError, InputError
from geotiler.train.models import apply_encoder_weights, available_presets, get_model, load_preset

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


def torchvision_resnet18_state(bands: int = 3) -> dict[str, torch.Tensor]:
    """A state dict with torchvision resnet18's exact keys and shapes (random values)."""
    state: dict[str, torch.Tensor] = {}

    def bn(prefix: str, channels: int) -> None:
        state[f"{prefix}.weight"] = torch.rand(channels)
        state[f"{prefix}.bias"] = torch.rand(channels)
        state[f"{prefix}.running_mean"] = torch.rand(channels)
        state[f"{prefix}.running_var"] = torch.rand(channels) + 0.5
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(7)

    state["conv1.weight"] = torch.randn(64, bands, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for layer, planes in enumerate([64, 128, 256, 512], start=1):
        for block in range(2):
            p = f"layer{layer}.{block}"
            cin = inplanes if block == 0 else planes
            state[f"{p}.conv1.weight"] = torch.randn(planes, cin, 3, 3)
            bn(f"{p}.bn1", planes)
            state[f"{p}.conv2.weight"] = torch.randn(planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            if block == 0 and layer > 1:
                state[f"{p}.downsample.0.weight"] = torch.randn(planes, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes)
        inplanes = planes
    state["fc.weight"] = torch.randn(1000, 512)
    state["fc.bias"] = torch.randn(1000)
    return state


def test_torchvision_resnet18_weights_load_strictly(tmp_path: Path) -> None:
    state = torchvision_resnet18_state()
    assert len(state) == 122  # torchvision's resnet18 state dict has 122 entries
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = get_model("unet-resnet18", in_channels=3, num_classes=4)
    apply_encoder_weights(model, path)
    loaded = model.encoder.state_dict()  # type: ignore[union-attr]
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key


def test_rgb_filters_are_spread_over_more_bands(tmp_path: Path) -> None:
    state = torchvision_resnet18_state()
    torch.save(state, tmp_path / "r18.pth")
    model = get_model("unet-resnet18", in_channels=10, num_classes=4)
    apply_encoder_weights(model, tmp_path / "r18.pth")
    first = model.encoder.conv1.weight.detach()  # type: ignore[union-attr]
    rgb = state["conv1.weight"]
    assert first.shape == (64, 10, 7, 7)
    for band in range(10):
        torch.testing.assert_close(first[:, band], rgb[:, band % 3] * 0.3)
    single = get_model("unet-resnet18", in_channels=1, num_classes=4)
    apply_encoder_weights(single, tmp_path / "r18.pth")
    torch.testing.assert_close(single.encoder.conv1.weight.detach()[:, 0], rgb.sum(dim=1))  # type: ignore[union-attr]


def test_encoder_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    torch.save(torchvision_resnet18_state(), tmp_path / "r18.pth")
    with pytest.raises(InputError, match="does not fit a resnet34 encoder"):
        apply_encoder_weights(
            get_model("unet-resnet34", in_channels=3, num_classes=2), tmp_path / "r18.pth"
        )
    torch.save(torchvision_resnet18_state(bands=4), tmp_path / "four.pth")
    with pytest.raises(InputError, match="take 4 bands but the store has 10"):
        apply_encoder_weights(
            get_model("unet-resnet18", in_channels=10, num_classes=2), tmp_path / "four.pth"
        )
    with pytest.raises(InputError, match="need a model with a ResNet encoder"):
        apply_encoder_weights(get_model("unet", in_channels=3, num_classes=2), tmp_path / "r18.pth")
