"""The paper's preprocessing (section 2) and augmentations (section 4.1).

Workers do the least work: decode, rescale to 256x256 and cut the crop, all in uint8. Each crop carries its
geometry (top, left, flipped): on the device the crop is mirrored where it was drawn so, the mean image is
subtracted from exactly the pixels the crop came from, and the PCA lighting is added (:class:`DeviceNormalizer`).
"""

from __future__ import annotations

from typing import Literal

import torch
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import functional as TF

from alexnet_lab.data.sampling import mix
from alexnet_lab.declare import checked
from alexnet_lab.models.alexnet import PAPER_INPUT_SIZE

# Section 2: images are down-sampled to 256x256: short side rescaled to 256, then the central 256x256 patch.
IMAGE_SIZE = 256
# Section 4.1: the lighting coefficients alpha_i are drawn from a Gaussian with mean 0 and std 0.1.
LIGHTING_STD = 0.1


def preprocess(image: Image.Image, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Section 2: rescale the short side to ``size``, take the central ``size`` x ``size`` patch (uint8 CHW)."""
    # On the uint8 tensor rather than the PIL image: torchvision's antialiased bilinear resize of uint8 tensors
    # is vectorised and, here, about twice as fast as PIL's (bench/loader.py).
    pixels = TF.pil_to_tensor(image)
    return TF.center_crop(TF.resize(pixels, size, antialias=True), [size, size])


def train_geometry(
    image_size: int = IMAGE_SIZE, size: int = PAPER_INPUT_SIZE, seed: int | None = None
) -> tuple[int, int, bool]:
    """Section 4.1: where a training crop is cut, (top, left, flipped): a random ``size`` x ``size`` patch,
    mirrored with probability 1/2, as a function of ``seed`` (else of torch's RNG).

    Three fields of one 63-bit hash of the seed: about a hundred times cheaper than seeding a torch.Generator
    per image, which cost a tenth of a prepared image's loading time."""
    if seed is None:
        seed = int(torch.randint(2**62, ()))
    bits = mix(seed)
    positions = image_size - size + 1
    return (bits & 0xFFFFF) % positions, ((bits >> 20) & 0xFFFFF) % positions, bool((bits >> 40) & 1)


def centre_geometry(image_size: int = IMAGE_SIZE, size: int = PAPER_INPUT_SIZE) -> tuple[int, int]:
    offset = int(round((image_size - size) / 2.0))  # torchvision's convention for the centre crop
    return offset, offset


def ten_crop_geometry(image_size: int = IMAGE_SIZE, size: int = PAPER_INPUT_SIZE) -> list[tuple[int, int, bool]]:
    """Section 4.1: the four corner patches and the centre patch, and their horizontal reflections."""
    far = image_size - size
    corners = [(0, 0), (0, far), (far, 0), (far, far), centre_geometry(image_size, size)]
    return [(t, left, flip) for flip in (False, True) for t, left in corners]


CropMode = Literal["train", "centre", "ten"]


class Crops:
    """Picklable worker transform: PIL image -> {"image": uint8 crop(s), "geometry": (top, left, flipped)}; the
    crops are cut, not mirrored (the device mirrors those whose geometry says so).

    ``mode`` is "train" (section 4.1's random patch and mirror), "centre" or "ten" (the four corners and the
    centre, and their mirrors)."""

    @checked
    def __init__(self, mode: CropMode, size: int = PAPER_INPUT_SIZE) -> None:
        self.mode, self.size = mode, size

    @property
    def count(self) -> int:
        """Crops per image: 10 for "ten", else 1."""
        return 10 if self.mode == "ten" else 1

    def geometry(self, image_size: int = IMAGE_SIZE, seed: int | None = None) -> list[tuple[int, int, bool]]:
        """The (top, left, flipped) of each crop of an ``image_size`` square; ``seed`` fixes a training crop."""
        if self.mode == "train":
            return [train_geometry(image_size, self.size, seed)]
        if self.mode == "centre":
            return [(*centre_geometry(image_size, self.size), False)]
        return ten_crop_geometry(image_size, self.size)

    def __call__(self, image: Image.Image | torch.Tensor, seed: int | None = None) -> dict[str, torch.Tensor]:
        """``image``: a PIL image, or an already rescaled uint8 CHW tensor.
        ``seed`` fixes a training crop's position and flip (see :mod:`alexnet_lab.data.sampling`)."""
        pixels = image if isinstance(image, torch.Tensor) else preprocess(image)
        geometry = self.geometry(pixels.shape[-1], seed)
        crops = torch.stack([pixels[:, top : top + self.size, left : left + self.size] for top, left, _ in geometry])
        table = torch.tensor([[top, left, int(flip)] for top, left, flip in geometry])
        return {"image": crops, "geometry": table} if self.mode == "ten" else {"image": crops[0], "geometry": table[0]}


def lighting_offset(alpha: torch.Tensor, eigvals: torch.Tensor, eigvecs: torch.Tensor) -> torch.Tensor:
    """Section 4.1: [p1 p2 p3][alpha1 lambda1, alpha2 lambda2, alpha3 lambda3]^T for each row of ``alpha``.

    ``eigvecs`` holds the eigenvectors p_i as columns; the result is in the units of the covariance's pixels.
    """
    return (alpha * eigvals) @ eigvecs.T


def crop_mean(mean_image: torch.Tensor, geometry: torch.Tensor, size: int) -> torch.Tensor:
    """The patches of ``mean_image`` (3, S, S) at each (top, left, flipped) row of ``geometry`` (N, 3), mirrored
    where flipped."""
    steps = torch.arange(size, device=geometry.device)
    rows, cols = geometry[:, 0, None] + steps, geometry[:, 1, None] + steps
    cols = torch.where(geometry[:, 2, None].bool(), cols.flip(1), cols)
    return mean_image[:, rows[:, :, None], cols[:, None, :]].transpose(0, 1)


def mirror(images: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """``images`` (N, C, H, W) with the columns of those where ``flipped`` (N,) reversed."""
    steps = torch.arange(images.shape[-1], device=images.device)
    columns = torch.where(flipped[:, None].bool(), steps.flip(0), steps)
    return images.gather(-1, columns[:, None, None, :].expand_as(images))


# The lighting's size along each principal axis: the paper's eigenvalues, or their square roots (cuda-convnet2's
# "color_stdevs"); docs/fidelity.md, "PCA lighting".
PcaLighting = Literal["eigenvalues", "stdevs"]


class DeviceNormalizer(nn.Module):
    """Subtracts the training-set mean (section 2) and adds the PCA lighting (section 4.1) on the device, to
    pixels in the paper's 0..255 range: the PCA is of pixels scaled to [0, 1], so its offset is scaled by 255
    (docs/fidelity.md, "PCA lighting"). ``divisor`` (per channel, 0..255 units) divides the centred pixels, for a
    net whose weights expect standardised images."""

    mean_image: torch.Tensor
    eigvals: torch.Tensor
    eigvecs: torch.Tensor
    divisor: torch.Tensor | None

    @checked
    def __init__(
        self,
        mean_image: torch.Tensor,
        eigvals: torch.Tensor,
        eigvecs: torch.Tensor,
        lighting_std: float = LIGHTING_STD,
        pca_lighting: PcaLighting = "eigenvalues",
        divisor: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        scales = eigvals if pca_lighting == "eigenvalues" else eigvals.clamp_min(0).sqrt()
        # buffers, to move with .to(device); a DataModule holds this module, so no checkpoint saves them
        self.register_buffer("mean_image", mean_image.float())
        self.register_buffer("eigvals", scales.float())
        self.register_buffer("eigvecs", eigvecs.float())
        self.register_buffer("divisor", None if divisor is None else divisor.float())
        self.lighting_std = lighting_std

    def forward(
        self,
        images: torch.Tensor,
        geometry: torch.Tensor,
        lighting: bool = False,
        alpha: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``images``: uint8 crops (N, 3, s, s) or (B, crops, 3, s, s) as cut, not mirrored; ``geometry`` matches
        without the pixels."""
        shape, geometry = images.shape, geometry.reshape(-1, 3).long()
        flat = mirror(images.reshape(-1, *shape[-3:]), geometry[:, 2]).float()
        out = flat - crop_mean(self.mean_image, geometry, shape[-1])
        if lighting and self.lighting_std > 0:
            if alpha is None:
                alpha = torch.randn(flat.shape[0], 3, device=flat.device) * self.lighting_std
            out = out + 255.0 * lighting_offset(alpha, self.eigvals, self.eigvecs)[:, :, None, None]
        if self.divisor is not None:  # a net's own normalisation: (pixels / 255 - mean) / std
            out = out / self.divisor[:, None, None]
        return out.contiguous().reshape(shape)  # prepared batches arrive channels-last: give one layout
