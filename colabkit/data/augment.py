"""Batched, on-device augmentations: pure functions of (batch, generator) -> batch.

The report augmented in PIL, one image at a time, on Colab's 2 vCPUs. Here a whole
batch (B, C, H, W), float in [0, 1], is transformed at once on whatever device it lives
on, with every random draw taken from a ``torch.Generator`` on that device, so an
epoch's augmentation is fixed by its seed. Augment before normalizing: rotation fills
the corners with black (0), as torchvision's PIL ``rotate`` does.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..registry import check_keys


class Part(NamedTuple):
    """This batch is images [start:stop) of a global batch of ``total`` (one DDP rank's)."""
    start: int
    stop: int
    total: int


def _span(x: torch.Tensor, part: Part | None) -> Part:
    """Under DDP each rank holds a slice of the global batch: the random draws are taken
    for the whole global batch (the same numbers one process would draw) and each rank
    uses its slice, so rank r's images are augmented exactly as in one process."""
    return part if part is not None else Part(0, x.shape[0], x.shape[0])


def _coin(x: torch.Tensor, p: float, g: torch.Generator | None, part: Part | None = None) -> torch.Tensor:
    """(B, 1, 1, 1) boolean mask, True with probability p."""
    lo, hi, n = _span(x, part)
    draw = torch.rand(n, device=x.device, generator=g)[lo:hi]
    return (draw < p).view(-1, 1, 1, 1)


def hflip(x: torch.Tensor, p: float, g: torch.Generator | None = None,
          part: Part | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    return torch.where(_coin(x, p, g, part), x.flip(3), x)


def vflip(x: torch.Tensor, p: float, g: torch.Generator | None = None,
          part: Part | None = None) -> torch.Tensor:
    """Mirror each image upside down with probability p."""
    return torch.where(_coin(x, p, g, part), x.flip(2), x)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate image i by degrees[i] counter-clockwise about its centre, same size,
    bilinear, corners filled with 0: the geometry of torchvision's ``rotate`` on a PIL
    image. Multiples of 90 degrees are exact pixel permutations (``rot90``)."""
    theta = torch.deg2rad(degrees.to(device=x.device, dtype=torch.float32))
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    # grid_sample's affine maps output coordinates (x right, y down, in [-1, 1]) to input
    # coordinates; a counter-clockwise turn on screen samples the input at R(-t) with y down.
    affine = torch.stack([torch.stack([cos, -sin, zero], 1),
                          torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(affine, list(x.shape), align_corners=False)
    out = F.grid_sample(x.float(), grid.to(x.device), mode="bilinear",
                        padding_mode="zeros", align_corners=False).to(x.dtype)
    quarter = torch.remainder(degrees.to(x.device), 360)
    for k in range(4):  # exact for 0, 90, 180, 270: no interpolation error
        out = torch.where((quarter == 90 * k).view(-1, 1, 1, 1), torch.rot90(x, k, (2, 3)), out)
    return out


def random_rotate(x: torch.Tensor, angles: torch.Tensor, probs: torch.Tensor,
                  g: torch.Generator | None = None, part: Part | None = None) -> torch.Tensor:
    """Rotate each image by an angle drawn from the discrete distribution (angles, probs)."""
    lo, hi, n = _span(x, part)
    idx = torch.multinomial(probs.to(x.device), n, replacement=True, generator=g)[lo:hi]
    return rotate(x, angles.to(x.device)[idx])


def random_crop(x: torch.Tensor, padding: int, g: torch.Generator | None = None,
                part: Part | None = None) -> torch.Tensor:
    """Pad by ``padding`` (reflect) and cut a random same-size window from each image."""
    b, c, h, w = x.shape
    lo, hi, n = _span(x, part)
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    off = torch.randint(0, 2 * padding + 1, (2, n), device=x.device, generator=g)[:, lo:hi]
    rows = (off[0, :, None] + torch.arange(h, device=x.device))  # (B, H)
    cols = (off[1, :, None] + torch.arange(w, device=x.device))  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, size: int, g: torch.Generator | None = None,
           part: Part | None = None) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square of each image (DeVries and Taylor, 2017), its centre
    drawn uniformly over the image, cut off at the borders; one mask for the batch."""
    b, c, h, w = x.shape
    lo, hi, n = _span(x, part)
    centre = torch.stack([torch.randint(0, h, (n,), device=x.device, generator=g),
                          torch.randint(0, w, (n,), device=x.device, generator=g)])[:, lo:hi]
    top, left = centre[0] - size // 2, centre[1] - size // 2        # (B,)
    rows = torch.arange(h, device=x.device)[None, :] - top[:, None]  # (B, H)
    cols = torch.arange(w, device=x.device)[None, :] - left[:, None]  # (B, W)
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    return x.masked_fill(inside[:, None], 0.0)


@dataclass(frozen=True)
class AugmentSpec:
    """What to do to each training image, applied in this order: crop (a translation by up
to ``crop_padding`` pixels, reflect-padded), flips, rotation, cutout.

    ``rotate_angles`` (degrees, counter-clockwise) are drawn with probabilities
    ``rotate_probs`` normalized to sum 1, as ``random.choices`` and ``torch.multinomial``
    treat weights. (colabkit's presets give probabilities that sum to 1: see the note on
    models 3 and 4 in ``experiments.py``.)
    """

    hflip: float = 0.0
    vflip: float = 0.0
    rotate_angles: tuple[float, ...] = ()
    rotate_probs: tuple[float, ...] = ()
    crop_padding: int = 0
    cutout: int = 0  # side of the zeroed square; 0: none

    def __post_init__(self):
        object.__setattr__(self, "rotate_angles", tuple(float(a) for a in self.rotate_angles))
        object.__setattr__(self, "rotate_probs", tuple(float(p) for p in self.rotate_probs))
        for key in ("hflip", "vflip"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"augmentation {key} must be a probability in [0, 1], "
                                 f"got {getattr(self, key)!r}")
        if len(self.rotate_angles) != len(self.rotate_probs):
            raise ValueError("augmentation rotate_angles and rotate_probs must have the same "
                             f"length, got {len(self.rotate_angles)} and {len(self.rotate_probs)}")
        if self.rotate_probs and (min(self.rotate_probs) < 0 or sum(self.rotate_probs) <= 0):
            raise ValueError("augmentation rotate_probs must be non-negative weights with a "
                             f"positive sum, got {self.rotate_probs}")
        for key in ("crop_padding", "cutout"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 0:
                raise ValueError(f"augmentation {key} must be a whole number >= 0, got "
                                 f"{getattr(self, key)!r}")

    @classmethod
    def from_dict(cls, spec: dict | "AugmentSpec" | None) -> "AugmentSpec":
        """Build from a dict, rejecting keys it does not know."""
        if isinstance(spec, cls):
            return spec
        spec = dict(spec or {})
        check_keys(spec, (f.name for f in fields(cls)), "augmentation key")
        return cls(**spec)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rotate_angles"], d["rotate_probs"] = list(self.rotate_angles), list(self.rotate_probs)
        return d

    def describe(self) -> str:
        """In words, as the report's Table 1 lists augmentation procedures."""
        parts = []
        if self.crop_padding:
            parts.append(f"random crop (pad {self.crop_padding})")
        if self.hflip:
            parts.append(f"horizontal flip p={self.hflip:g}")
        if self.vflip:
            parts.append(f"vertical flip p={self.vflip:g}")
        turns = [(a, p) for a, p in zip(self.rotate_angles, self.rotate_probs) if a % 360 and p]
        if turns:
            parts.append("rotation " + ", ".join(f"{a:g}°:{p:g}" for a, p in turns))
        if self.cutout:
            parts.append(f"cutout {self.cutout}x{self.cutout}")
        return "; ".join(parts) or "none"


class Augmenter:
    """Applies an ``AugmentSpec`` to (B, C, H, W) float batches on their own device."""

    def __init__(self, spec: AugmentSpec | dict | None):
        self.spec = AugmentSpec.from_dict(spec)
        self._angles = torch.tensor(self.spec.rotate_angles, dtype=torch.float32)
        self._probs = torch.tensor(self.spec.rotate_probs, dtype=torch.float32)
        self._rotates = any(a % 360 and p for a, p in zip(self.spec.rotate_angles,
                                                            self.spec.rotate_probs))

    @property
    def active(self) -> bool:
        s = self.spec
        return bool(s.crop_padding or s.hflip or s.vflip or self._rotates or s.cutout)

    def __call__(self, x: torch.Tensor, g: torch.Generator | None = None,
                 part: Part | None = None) -> torch.Tensor:
        """Augment ``x``; ``part=(start, stop, total)`` when ``x`` is images
        [start:stop) of a global batch of ``total`` (DDP), drawing as for the whole."""
        s = self.spec
        if s.crop_padding:
            x = random_crop(x, s.crop_padding, g, part)
        if s.hflip:
            x = hflip(x, s.hflip, g, part)
        if s.vflip:
            x = vflip(x, s.vflip, g, part)
        if self._rotates:
            if self._angles.device != x.device:  # moved once, not per batch
                self._angles, self._probs = self._angles.to(x.device), self._probs.to(x.device)
            x = random_rotate(x, self._angles, self._probs, g, part)
        if s.cutout:
            x = cutout(x, s.cutout, g, part)
        return x
