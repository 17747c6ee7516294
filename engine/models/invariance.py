"""Keep an image independent of the batch it was made in, down to the last bit on the CPU.

Per-image generators make batching change nothing *meaningful*; these measures make it change
nothing at all, so a test can compare pixels. Three kernels would otherwise pick different
arithmetic for a different batch size (all found by comparing layer outputs of one image alone
and in a batch):

- 2-D matrix products: BLAS chooses its kernel by the number of rows, and the UNet's timestep
  embedding (and each resnet's projection of it) is a 2-D product with one row per sample.
  ``PerImageLinear`` evaluates those rows in the groups a single image would have: once when
  the rows are identical (they are: one timestep for the whole batch), otherwise image by image.
- The VAE: sliced decoding (one image at a time) avoids GroupNorm and convolution code paths
  that are chosen by batch size; it also bounds VAE memory for big batches.
- CPU convolutions: oneDNN chooses algorithms by batch size, and NNPACK takes over from 16
  samples on; ``batch_invariant_kernels`` turns both off around a pipeline call on the CPU, which
  leaves PyTorch's own convolution, computed sample by sample. The CPU is for tests and the
  command line, so the speed lost there does not matter; CUDA is left alone.

On CUDA, cuBLAS and cuDNN also choose kernels by shape, so batching may move a value by one
rounding step there; the seeds still decide the picture.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

# The modules that see the timestep embedding, one row per sample.
_TIME_EMBEDDING_LINEARS = frozenset({"linear_1", "linear_2", "time_emb_proj"})


class PerImageLinear(nn.Module):
    """A ``Linear`` whose 2-D inputs are evaluated in the row groups of a single image.

    ``rows_per_image`` is 2 under classifier-free guidance (the unconditional and conditional
    rows) and 1 without it; the batch lays rows out as ``[uncond_1..n, cond_1..n]``.
    """

    def __init__(self, inner: nn.Linear, parent: nn.Module, name: str) -> None:
        super().__init__()
        self.inner = inner
        self.rows_per_image: int | None = None
        # Where it sits, to step aside for a call of one image (``batch_invariant_kernels``);
        # a tuple, so that ``nn.Module`` does not register the parent as a submodule.
        self.place: tuple[nn.Module, str] = (parent, name)
        # Pipelines read a linear's shape (SDXL's checks its added-conditioning width).
        self.in_features = inner.in_features
        self.out_features = inner.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.rows_per_image
        rows = x.shape[0]
        if k is None or x.dim() != 2 or rows <= k or rows % k:
            return self.inner(x)
        if torch.equal(x, x[:1].expand_as(x)):
            return self.inner(x[:k]).repeat(rows // k, 1)
        images = rows // k
        # Row r of image i sits at r * images + i; gather each image's rows together.
        order = torch.arange(rows, device=x.device).reshape(k, images).t().reshape(-1)
        grouped = x[order]
        y = torch.cat([self.inner(grouped[i * k : (i + 1) * k]) for i in range(images)])
        out = torch.empty_like(y)
        out[order] = y
        return out


def make_batch_invariant(unet: nn.Module, vae: nn.Module) -> list[PerImageLinear]:
    """Wrap the UNet's timestep linears and slice the VAE; returns the wrappers to configure."""
    wrappers: list[PerImageLinear] = []

    def visit(module: nn.Module) -> None:
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and name in _TIME_EMBEDDING_LINEARS:
                wrapper = PerImageLinear(child, module, name)
                setattr(module, name, wrapper)
                wrappers.append(wrapper)
            elif not isinstance(child, PerImageLinear):
                visit(child)

    visit(unet)
    # diffusers' VAEs have it; nn.Module's typing knows only tensors and submodules.
    enable_slicing = getattr(vae, "enable_slicing", None)
    if enable_slicing is not None:
        enable_slicing()
    return wrappers


@contextlib.contextmanager
def sample_by_sample_cpu_convolutions() -> Iterator[None]:
    """Turn off the CPU convolution backends that choose their arithmetic by batch size."""
    # mkldnn is set directly: torch.backends.mkldnn.flags() also sets TF32 options and warns
    # about them on every call.
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # type: ignore[assignment]  # typed as its descriptor
    try:
        with torch.backends.nnpack.flags(enabled=False):
            yield
    finally:
        torch.backends.mkldnn.enabled = previous


@contextlib.contextmanager
def batch_invariant_kernels(
    device: torch.device,
    wrappers: list[PerImageLinear],
    rows_per_image: int,
    images: int | None = None,
) -> Iterator[None]:
    """Around one pipeline call of ``images`` images (None: not known): set the row grouping
    and, on the CPU, pick invariant kernels.

    A call of one image is its own single image: the wrappers would pass its rows straight to
    their ``Linear`` anyway, so they step aside for it (each costs a module call per UNet step,
    a fixed cost that shows on small pictures); the CPU kernels stay invariant all the same.
    They stay aside after it, and the next call of several images (or of a number not known)
    puts them back first: a run of lone jobs swaps nothing. Every pipeline call of the engine
    goes through here, so no batch runs without them.
    """
    alone = images == 1
    for wrapper in wrappers:
        parent, name = wrapper.place
        sitting = parent._modules.get(name)  # what getattr finds, without nn.Module's detour
        if alone:
            if sitting is wrapper:
                setattr(parent, name, wrapper.inner)
            continue  # aside: its row grouping is not read
        if sitting is wrapper.inner:
            setattr(parent, name, wrapper)
        wrapper.rows_per_image = rows_per_image
    try:
        if device.type == "cpu":
            with sample_by_sample_cpu_convolutions():
                yield
        else:
            yield
    finally:
        if not alone:
            for wrapper in wrappers:
                wrapper.rows_per_image = None
