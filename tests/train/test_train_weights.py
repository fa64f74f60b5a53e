"""Pretrained encoder weights: torchvision/torchgeo ResNets and HF MiT files, bands by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geotiler.errors import InputError
from geotiler.train.models import apply_encoder_weights, get_model
from geotiler.train.models.first_conv import canonical_band, match_bands

RGB = ("red", "green", "blue")
TINY_MIT = {
    "hidden_sizes": (8, 16, 24, 32),
    "depths": (1, 2, 1, 1),
    "num_attention_heads": (1, 2, 3, 4),
    "decoder_hidden_size": 16,
}


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


def hf_mit_state(
    *, classes: int | None = None, decoder: int = 16, sr: tuple[int, ...] = (8, 4, 2, 1)
) -> dict[str, torch.Tensor]:
    """Tensors named as Hugging Face's SegformerFor{ImageClassification,SemanticSegmentation}
    saves them, for the TINY_MIT shape; written out by hand from the reference's module tree."""
    state: dict[str, torch.Tensor] = {}

    def linear(name: str, cin: int, cout: int) -> None:
        state[f"{name}.weight"], state[f"{name}.bias"] = torch.randn(cout, cin), torch.randn(cout)

    def norm(name: str, width: int) -> None:
        state[f"{name}.weight"], state[f"{name}.bias"] = torch.rand(width), torch.randn(width)

    hidden, depths = TINY_MIT["hidden_sizes"], TINY_MIT["depths"]
    for i, width in enumerate(hidden):
        cin, kernel = (3, 7) if i == 0 else (hidden[i - 1], 3)
        embed = f"segformer.encoder.patch_embeddings.{i}"
        state[f"{embed}.proj.weight"] = torch.randn(width, cin, kernel, kernel)
        state[f"{embed}.proj.bias"] = torch.randn(width)
        norm(f"{embed}.layer_norm", width)
        for j in range(depths[i]):
            layer = f"segformer.encoder.block.{i}.{j}"
            norm(f"{layer}.layer_norm_1", width)
            for part in ("query", "key", "value"):
                linear(f"{layer}.attention.self.{part}", width, width)
            if sr[i] > 1:
                state[f"{layer}.attention.self.sr.weight"] = torch.randn(width, width, sr[i], sr[i])
                state[f"{layer}.attention.self.sr.bias"] = torch.randn(width)
                norm(f"{layer}.attention.self.layer_norm", width)
            linear(f"{layer}.attention.output.dense", width, width)
            norm(f"{layer}.layer_norm_2", width)
            linear(f"{layer}.mlp.dense1", width, 4 * width)
            state[f"{layer}.mlp.dwconv.dwconv.weight"] = torch.randn(4 * width, 1, 3, 3)
            state[f"{layer}.mlp.dwconv.dwconv.bias"] = torch.randn(4 * width)
            linear(f"{layer}.mlp.dense2", 4 * width, width)
        norm(f"segformer.encoder.layer_norm.{i}", width)
    if classes is None:  # nvidia/mit-b*: an ImageNet classifier on top
        linear("classifier", hidden[-1], 1000)
        return state
    for i, width in enumerate(hidden):
        linear(f"decode_head.linear_c.{i}.proj", width, decoder)
    state["decode_head.linear_fuse.weight"] = torch.randn(decoder, 4 * decoder, 1, 1)
    norm("decode_head.batch_norm", decoder)
    state["decode_head.batch_norm.running_mean"] = torch.randn(decoder)
    state["decode_head.batch_norm.running_var"] = torch.rand(decoder) + 0.5
    state["decode_head.batch_norm.num_batches_tracked"] = torch.tensor(3)
    state["decode_head.classifier.weight"] = torch.randn(classes, decoder, 1, 1)
    state["decode_head.classifier.bias"] = torch.randn(classes)
    return state


def _save_safetensors(state: dict[str, torch.Tensor], path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _tiny_segformer(bands: int = 3, classes: int = 4) -> torch.nn.Module:
    return get_model("segformer-b0", in_channels=bands, num_classes=classes, **TINY_MIT)


def test_hf_mit_state_dict_loads_by_name(tmp_path: Path) -> None:
    state = hf_mit_state()
    path = _save_safetensors(state, tmp_path / "mit-tiny" / "model.safetensors")
    model = _tiny_segformer()
    loaded = apply_encoder_weights(model, path, bands=("red", "green", "blue"))
    encoder = model.segformer.encoder.state_dict()  # type: ignore[union-attr]
    expected = {k.removeprefix("segformer.encoder."): v for k, v in state.items() if "encoder" in k}
    assert set(encoder) == set(expected)  # strict: every tensor of the encoder, no other
    for key, value in encoder.items():
        assert torch.equal(value, expected[key]), key
    assert loaded.tensors == len(expected)
    assert loaded.record()["mean"] == [0.485, 0.456, 0.406]
    assert "Hugging Face" in loaded.describe()


def test_hf_segformer_decoder_loads_but_keeps_its_own_classifier(tmp_path: Path) -> None:
    state = hf_mit_state(classes=150)
    path = _save_safetensors(state, tmp_path / "model.safetensors")
    model = _tiny_segformer(bands=4, classes=5)
    own_classifier = model.decode_head.classifier.weight.detach().clone()  # type: ignore[union-attr]
    apply_encoder_weights(model, path, bands=("B02", "B03", "B04", "B08"))
    head = model.decode_head  # type: ignore[union-attr]
    assert torch.equal(head.linear_fuse.weight, state["decode_head.linear_fuse.weight"])
    assert torch.equal(head.batch_norm.running_var, state["decode_head.batch_norm.running_var"])
    assert torch.equal(head.classifier.weight, own_classifier)
    first = model.segformer.encoder.patch_embeddings[0].proj.weight  # type: ignore[union-attr,index]
    rgb = state["segformer.encoder.patch_embeddings.0.proj.weight"]
    assert torch.equal(first[:, 2], rgb[:, 0])  # B04 <- red
    assert torch.equal(first[:, 0], rgb[:, 2])  # B02 <- blue


def test_a_mit_of_another_size_is_refused(tmp_path: Path) -> None:
    path = _save_safetensors(hf_mit_state(), tmp_path / "model.safetensors")
    with pytest.raises(InputError, match="does not fit this MiT encoder"):
        apply_encoder_weights(
            get_model("segformer-b0", in_channels=3, num_classes=2), path, bands=RGB
        )
    torch.save(torchvision_resnet18_state(), tmp_path / "r18.pth")
    with pytest.raises(InputError, match="not a Hugging Face MiT/SegFormer state dict"):
        apply_encoder_weights(_tiny_segformer(), tmp_path / "r18.pth", bands=RGB)


def test_torchvision_resnet18_weights_load_strictly(tmp_path: Path) -> None:
    state = torchvision_resnet18_state()
    assert len(state) == 122  # torchvision's resnet18 state dict has 122 entries
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)
    model = get_model("unet-resnet18", in_channels=3, num_classes=4)
    loaded = apply_encoder_weights(model, path, bands=("B04", "B03", "B02"))
    encoder = model.encoder.state_dict()  # type: ignore[union-attr]
    assert set(encoder) == {k for k in state if not k.startswith("fc.")}
    for key, value in encoder.items():
        assert torch.equal(value, state[key]), key
    assert loaded.record()["mapping"] == {"B04": "red", "B03": "green", "B02": "blue"}


def test_imagenet_red_filter_lands_on_b04_wherever_it_is(tmp_path: Path) -> None:
    state = torchvision_resnet18_state()
    torch.save(state, tmp_path / "resnet18-f37072fd.pth")
    rgb = state["conv1.weight"]  # channels: red, green, blue
    model = get_model("unet-resnet18", in_channels=5, num_classes=4)
    bands = ("B02", "B03", "B04", "B08", "B11")  # Sentinel-2 file order: blue first
    loaded = apply_encoder_weights(model, tmp_path / "resnet18-f37072fd.pth", bands=bands)
    first = model.encoder.conv1.weight.detach()  # type: ignore[union-attr]
    assert torch.equal(first[:, 2], rgb[:, 0])  # B04 <- red
    assert torch.equal(first[:, 1], rgb[:, 1])  # B03 <- green
    assert torch.equal(first[:, 0], rgb[:, 2])  # B02 <- blue
    for unknown in (3, 4):
        torch.testing.assert_close(first[:, unknown], rgb.mean(dim=1) * 3 / 5)
    assert loaded.mapping.unknown == ("B08", "B11")
    assert loaded.record()["mapping"]["B04"] == "red"
    assert "B04<-red" in loaded.describe()


def test_one_unknown_band_gets_the_summed_filter(tmp_path: Path) -> None:
    state = torchvision_resnet18_state()
    torch.save(state, tmp_path / "r18.pth")  # unknown name, 3 channels: ImageNet RGB assumed
    model = get_model("unet-resnet18", in_channels=1, num_classes=4)
    apply_encoder_weights(model, tmp_path / "r18.pth", bands=("pan",))
    first = model.encoder.conv1.weight.detach()[:, 0]  # type: ignore[union-attr]
    torch.testing.assert_close(first, state["conv1.weight"].sum(dim=1))


def test_torchgeo_sentinel2_weights_map_13_bands_by_name(tmp_path: Path) -> None:
    state = torchvision_resnet18_state(bands=13)  # timm names = torchvision names
    path = tmp_path / "resnet18_sentinel2_all_moco-59bfdff9.pth"
    torch.save(state, path)
    model = get_model("unet-resnet18", in_channels=5, num_classes=3)
    loaded = apply_encoder_weights(model, path, bands=("B4", "B03", "b2", "B8a", "ndvi"))
    first, s2 = model.encoder.conv1.weight.detach(), state["conv1.weight"]  # type: ignore[union-attr]
    for channel, s2_index in ((0, 3), (1, 2), (2, 1), (3, 8)):  # B04, B03, B02, B8A
        assert torch.equal(first[:, channel], s2[:, s2_index])
    torch.testing.assert_close(first[:, 4], s2.mean(dim=1) * 13 / 5)
    record = loaded.record()
    assert record["std"] == [10000.0] * 13 and "SSL4EO-S12" in record["origin"]
    assert record["mapping"] == {"B4": "B04", "B03": "B03", "b2": "B02", "B8a": "B8A", "ndvi": None}


def test_a_sidecar_yaml_names_the_bands_of_any_file(tmp_path: Path) -> None:
    path = tmp_path / "landsat.pth"
    torch.save(torchvision_resnet18_state(bands=4), path)
    (tmp_path / "landsat.pth.yaml").write_text(
        "bands: [SR_B2, SR_B3, SR_B4, SR_B5]\nmean: [0, 0, 0, 0]\nstd: [255, 255, 255, 255]\n"
    )
    model = get_model("unet-resnet18", in_channels=2, num_classes=3)
    loaded = apply_encoder_weights(model, path, bands=("SR_B5", "SR_B4"))
    assert loaded.record()["mapping"] == {"SR_B5": "SR_B5", "SR_B4": "SR_B4"}
    assert loaded.record()["std"] == [255.0] * 4
    (tmp_path / "landsat.pth.yaml").write_text("bands: [a, b, c, d]\nstdev: [1, 2, 3, 4]\n")
    with pytest.raises(InputError, match=r"landsat.pth.yaml: not a valid weights sidecar"):
        apply_encoder_weights(model, path, bands=("a", "b"))
    (tmp_path / "landsat.pth.yaml").write_text("bands: [a, b, c]\n")
    with pytest.raises(InputError, match="takes 4 bands but its band list"):
        apply_encoder_weights(model, path, bands=("a", "b"))


def test_weights_of_unknown_bands_ask_for_a_sidecar(tmp_path: Path) -> None:
    torch.save(torchvision_resnet18_state(bands=4), tmp_path / "four.pth")
    with pytest.raises(InputError, match=r"write four.pth.yaml next to it with 'bands: \[...\]'"):
        apply_encoder_weights(
            get_model("unet-resnet18", in_channels=10, num_classes=2),
            tmp_path / "four.pth",
            bands=[f"B{i:02d}" for i in range(10)],
        )


def test_missing_or_misfitting_weights_are_clear_errors(tmp_path: Path) -> None:
    model = get_model("unet-resnet34", in_channels=3, num_classes=2)
    with pytest.raises(
        InputError, match=r"not found.*nothing is downloaded.*huggingface.co/torchgeo"
    ):
        apply_encoder_weights(model, tmp_path / "resnet34.pth", bands=RGB)
    torch.save(torchvision_resnet18_state(), tmp_path / "r18.pth")
    with pytest.raises(InputError, match="does not fit a resnet34 encoder"):
        apply_encoder_weights(model, tmp_path / "r18.pth", bands=RGB)
    with pytest.raises(InputError, match="need a model with a ResNet or MiT encoder"):
        apply_encoder_weights(
            get_model("unet", in_channels=3, num_classes=2), tmp_path / "r18.pth", bands=RGB
        )


def test_band_names_match_by_sentinel2_number_then_colour() -> None:
    assert canonical_band(" b8a ") == "B8A" and canonical_band("B1") == "B01"
    assert match_bands(["blue", "B8", "SR_B4", "x"], ["B04", "B03", "B02", "B08"]) == (
        2, 3, None, None,
    )  # fmt: skip
