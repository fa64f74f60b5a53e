"""Batches on the training device: integer tiles in, normalised and augmented tensors out.

The loader ships tiles as the store keeps them (uint8 or uint16: a quarter or half of float32's
bytes through the worker pipes, pinned memory and the PCIe bus); :class:`DeviceBatches` moves a
batch to the device and there converts it to float32, clips each band to ``[low, high]`` when
given (robust statistics), normalises it with the band's mean and standard deviation and, for
training, applies a random element of the dihedral group D4 to each tile (``k`` quarter turns,
then a left-right mirror; labels stay on their pixels). On a GPU that work
costs the GPU microseconds instead of the loader's CPU cores milliseconds.

uint16 travels as int16 (the same bits): torch handles uint16 tensors only partially.

On the CPU the same work is done a tile at a time with NumPy (read strided through the D4 view,
converted, normalised into place): a whole batch of float32 is ~58 MB, above glibc's largest
``mmap`` threshold, so batch-sized temporaries would each be fresh pages, faulted in one by one
(that cost ~10 ms a tile). The CPU path writes into one output buffer kept between calls: a
returned image is valid until the next call, which is how a training loop uses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def as_tensor(images: np.ndarray) -> torch.Tensor:
    """A batch of tiles as a tensor without conversion (uint16 viewed as int16)."""
    if images.dtype == np.uint16:
        return torch.from_numpy(images.view(np.int16))
    if images.dtype in (np.uint8, np.int8, np.int16, np.int32, np.float16, np.float32):
        return torch.from_numpy(images)
    return torch.from_numpy(images.astype(np.float32))


def draw_d4(count: int) -> torch.Tensor:
    """A random D4 element per tile: ``code = 2 * quarter_turns + mirror`` (torch's generator)."""
    return torch.randint(8, (count,))


def d4_batch(
    image: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """D4 element ``codes[i]`` (random when None) applied to tile ``i`` of ``image`` and ``mask``.

    ``image`` is (N, B, S, S), ``mask`` (N, S, S); the codes come from :func:`draw_d4`, which
    draws from torch's global generator (on the CPU), so a seeded run is reproducible.
    """
    codes = draw_d4(image.shape[0]) if codes is None else codes
    out_image, out_mask = torch.empty_like(image), torch.empty_like(mask)
    for code in codes.unique().tolist():
        picked = (codes == code).nonzero().squeeze(1).to(image.device)
        k, flip = divmod(int(code), 2)
        part_image = torch.rot90(image.index_select(0, picked), k, (-2, -1))
        part_mask = torch.rot90(mask.index_select(0, picked), k, (-2, -1))
        if flip:
            part_image, part_mask = part_image.flip(-1), part_mask.flip(-1)
        out_image.index_copy_(0, picked, part_image)
        out_mask.index_copy_(0, picked, part_mask)
    return out_image, out_mask


class DeviceBatches:
    """Turns loader batches into the model's input on ``device`` (see the module docstring).

    Args:
        mean, std: per-band statistics (a zero std is taken as 1).
        low, high: per-band clipping range applied before normalising (both or neither).
        dtype: the store's image dtype (``uint16`` batches arrive as int16).
        device: where the model is.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        low: Sequence[float] | None = None,
        high: Sequence[float] | None = None,
        dtype: str,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        safe = [s if s > 0 else 1.0 for s in std]
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.clip: tuple[torch.Tensor, torch.Tensor] | None = None
        if low is not None and high is not None:
            self.clip = (
                torch.tensor(low, dtype=torch.float32, device=self.device).view(1, -1, 1, 1),
                torch.tensor(high, dtype=torch.float32, device=self.device).view(1, -1, 1, 1),
            )
        self.inv_std = (1.0 / torch.tensor(safe, dtype=torch.float64)).float()
        self.inv_std = self.inv_std.to(self.device).view(1, -1, 1, 1)
        self.unsigned16 = np.dtype(dtype) == np.uint16
        self._out: torch.Tensor | None = None  # the CPU path's output, reused

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, *, augment: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 normalised ``image`` (N, B, S, S) and int64 ``mask`` (N, S, S) on the device."""
        codes = draw_d4(image.shape[0]) if augment else None
        if self.device.type == "cpu":
            return self._on_cpu(image, mask, codes)
        image = image.to(self.device, non_blocking=True)
        mask = mask.to(self.device, non_blocking=True)
        if self.unsigned16 and image.dtype == torch.int16:
            image = image.to(torch.int32).bitwise_and_(0xFFFF)
        image = image.to(torch.float32)
        if self.clip is not None:
            image = torch.clamp(image, *self.clip)
        image = (image - self.mean).mul_(self.inv_std)
        mask = mask.to(torch.int64)
        if codes is not None:
            image, mask = d4_batch(image, mask, codes)
        if self.device.type == "cuda":
            image = image.contiguous(memory_format=torch.channels_last)
        return image, mask

    def _on_cpu(
        self, image: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = image.numpy()
        if self.unsigned16 and pixels.dtype == np.int16:
            pixels = pixels.view(np.uint16)
        if self._out is None or self._out.shape != image.shape:
            self._out = torch.empty(image.shape, dtype=torch.float32)
        out, labels = self._out.numpy(), mask.numpy()
        out_mask = torch.empty(mask.shape, dtype=torch.int64)
        mean = self.mean[0].numpy()
        inv_std = self.inv_std[0].numpy()
        clip = None if self.clip is None else (self.clip[0][0].numpy(), self.clip[1][0].numpy())
        for k in range(len(pixels)):
            tile, label = pixels[k], labels[k]
            if codes is not None:
                turns, mirror = divmod(int(codes[k]), 2)
                tile, label = np.rot90(tile, turns, (-2, -1)), np.rot90(label, turns, (-2, -1))
                if mirror:
                    tile, label = tile[..., ::-1], label[..., ::-1]
            if clip is not None:
                np.clip(tile, *clip, out=out[k], dtype=np.float32, casting="unsafe")
                np.subtract(out[k], mean, out=out[k])
            else:
                np.subtract(tile, mean, out=out[k], dtype=np.float32)
            np.multiply(out[k], inv_std, out=out[k])
            out_mask[k].numpy()[...] = label
        return self._out, out_mask
