"""The AlexNet backbone of Krizhevsky, Sutskever & Hinton (NIPS 2012), section 3.

Every ablation the paper discusses is a constructor argument. ``norm``, ``pooling``, ``activation`` and ``init``
are Hydra config groups with one file per choice of their ``Literal`` (conf/<group>/<choice>.yaml), so that
``python src/train.py -m pooling=overlap,nonoverlap`` runs both: a new choice is a new value here, and its file.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from annotated_types import Interval, Len
from torch import nn
from torch.autograd.function import once_differentiable

from alexnet_lab.declare import PositiveInt, checked

# Sections 3.5 and 4.1: 224x224 patches, conv1 reading 3 zero pixels past the right and bottom edges for its 55x55
# maps, as cuda-convnet computes it; or Caffe's 227 with no padding (docs/fidelity.md, "224 or 227").
InputSize = Literal[224, 227]
PAPER_INPUT_SIZE: InputSize = 224

# Section 3.5: kernels per layer, conv1..conv5, summed over both GPU columns.
PAPER_WIDTHS = (96, 256, 384, 384, 256)
# Section 3.2, footnote: the one-GPU baseline halves conv1..conv4 only; conv5 (and the FC layers) keep
# their width, "the same number of kernels as in the last convolutional layer of the two-GPU net".
ONE_GPU_WIDTHS = (48, 128, 192, 192, 256)
FC_WIDTH = 4096  # Section 3.5: 4096 neurons in each fully-connected hidden layer.
DROPOUT = 0.5  # Section 4.2: dropout probability in FC6 and FC7.

# Section 5: weights from N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden FC layers ("accelerates the
# early stages of learning by providing the ReLUs with positive inputs"), 0 in the others.
INIT_STD, PAPER_BIAS, BIASED_LAYERS = 0.01, 1.0, ("conv2", "conv4", "conv5", "fc6", "fc7")
# Each init's (bias of those layers, FC6 and FC7's weight std; None: Kaiming normal). init=caffe, BVLC's reference
# AlexNet: bias 1 left the loss flat for them, so 0.1; FC6 and FC7 weights std 0.005.
INITS = {"paper": (PAPER_BIAS, INIT_STD), "caffe": (0.1, 0.005), "kaiming": (0.0, None)}

# Section 3.3: k = 2, n = 5, alpha = 1e-4, beta = 0.75, alpha multiplying the sum of the n squares.
LRN_K, LRN_SIZE, LRN_ALPHA, LRN_BETA = 2.0, 5, 1e-4, 0.75
CAFFE_LRN_K = 1.0  # Caffe's reading: k = 1, alpha / n, over all maps of the layer (docs/fidelity.md, "LRN")

Norm = Literal["lrn", "bn", "none"]  # section 3.3's LRN after conv1 and conv2, BatchNorm2d there, or nothing
Pooling = Literal["overlap", "nonoverlap"]  # section 3.4: 3x3 windows with stride 2, or 2x2 with stride 2
Activation = Literal["relu", "tanh"]  # section 3.1: wherever the paper has a ReLU
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh}
Init = Literal["paper", "caffe", "kaiming"]  # section 5; BVLC's reference values; Kaiming normal


def _window_sum(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Out[..., i, :, :] = x[..., i - before, :, :] + ... + x[..., i + after, :, :], over the maps that exist (zero
    beyond the edges)."""
    out = x.clone()
    for shift in range(1, before + 1):  # a shift past the last map adds two empty slices
        out[..., shift:, :, :] += x[..., :-shift, :, :]
    for shift in range(1, after + 1):
        out[..., :-shift, :, :] += x[..., shift:, :, :]
    return out


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in fp32, or in float64 if it is; bf16 and fp16 maps lose the normalisation in their 8 or 11 bits."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _stencil_grad(a: torch.Tensor, grad: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """The gradient of :class:`_LRN` as one expression of shifted loads of ``a`` and ``grad``, with no intermediate
    map that two terms share: inductor fuses it into a single pass (a shared intermediate it would write out)."""
    before, after = size // 2, (size - 1) // 2
    reach, maps = before + after, a.shape[-3]
    x, g = _wide(a), _wide(grad)
    squares = F.pad(x * x, (0, 0, 0, 0, reach, reach))  # map m at m + reach
    xs, gs = (F.pad(t, (0, 0, 0, 0, after, before)) for t in (x, g))  # map m at m + after

    def denominator(i: int) -> torch.Tensor:  # of map m + i
        window = [squares.narrow(-3, reach + i + j, maps) for j in range(-before, after + 1)]
        return sum(window[1:], window[0]) * alpha + k

    terms = [
        gs.narrow(-3, after + i, maps) * xs.narrow(-3, after + i, maps) * denominator(i).pow(-beta - 1)
        for i in range(-after, before + 1)
    ]
    spread = sum(terms[1:], terms[0])
    return (g * denominator(0).pow(-beta) - 2 * alpha * beta * x * spread).to(a.dtype)


class _LRN(torch.autograd.Function):
    """Section 3.3's normalisation over the maps (dim -3), computed in fp32 whatever the maps' dtype and rounded
    once to it; only the maps are kept for the backward pass.

    With d_i = k + alpha * sum_{j in W(i)} a_j^2 and b_i = a_i d_i^-beta:
    dL/da_m = g_m d_m^-beta - 2 alpha beta a_m sum_{i: m in W(i)} g_i a_i d_i^(-beta-1).

    Eager, each operation is a kernel of its own, so the backward computes each window sum once and keeps it;
    compiled, it is one stencil (:func:`_stencil_grad`): one pass over the maps each way (tests/test_model.py
    counts the kernels).
    """

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
        ctx.save_for_backward(a)
        ctx.constants = size, alpha, beta, k
        x = _wide(a)
        return (x * (_window_sum(x * x, size // 2, (size - 1) // 2) * alpha + k).pow(-beta)).to(a.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (a,) = ctx.saved_tensors
        size, alpha, beta, k = ctx.constants
        if torch.compiler.is_compiling():
            return _stencil_grad(a, grad, size, alpha, beta, k), None, None, None, None
        x = _wide(a)
        denominator = _window_sum(x * x, size // 2, (size - 1) // 2).mul_(alpha).add_(k)
        grad_scaled = _wide(grad) * denominator.pow(-beta)
        # the windows that contain map m are those of maps m - after .. m + before: the window mirrored
        spread = _window_sum(grad_scaled * x / denominator, (size - 1) // 2, size // 2)
        return torch.addcmul(grad_scaled, x, spread, value=-2 * alpha * beta).to(a.dtype), None, None, None, None


class PaperLRN(nn.LocalResponseNorm):
    """Section 3.3's b_i = a_i / (k + alpha * sum_{j in n adjacent maps} a_j^2) ^ beta, within each of ``columns``
    (docs/fidelity.md, "LRN"). torch.nn.LocalResponseNorm averages the squares (alpha / n * sum), so it is given
    alpha * n; the forward pass is ``_LRN``, in fp32 whatever the maps' dtype: in bf16's 8 bits of mantissa the
    window's sum of squares and its power lose most of the normalisation (tests/test_model.py)."""

    def __init__(self, size: int = LRN_SIZE, alpha: float = LRN_ALPHA, beta: float = LRN_BETA, k: float = LRN_K,
                 columns: int = 1) -> None:  # fmt: skip
        super().__init__(size=size, alpha=alpha * size, beta=beta, k=k)
        self.paper_alpha, self.columns = alpha, columns

    @classmethod
    def caffe(cls) -> PaperLRN:
        """Caffe's reading: alpha / n times the sum, k = 1, over all maps of the layer."""
        return cls(LRN_SIZE, LRN_ALPHA / LRN_SIZE, LRN_BETA, CAFFE_LRN_K, columns=1)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        b, c, h, w = a.shape  # each column's maps apart, (b, columns, c / columns, h, w): a view in either layout
        per_column = a.view(b, self.columns, c // self.columns, h, w)
        return _LRN.apply(per_column, self.size, self.paper_alpha, self.beta, self.k).reshape(b, c, h, w)

    def extra_repr(self) -> str:
        return f"n={self.size}, alpha={self.paper_alpha}, beta={self.beta}, k={self.k}, columns={self.columns}"


class PaperDropout(nn.Module):
    """Section 4.2 as written: in training each unit's output is set to zero with probability ``p``; at test
    time every unit is used and its output multiplied by 1 - p (docs/fidelity.md, "Dropout": not torch's)."""

    def __init__(self, p: float = DROPOUT) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x * torch.empty_like(x).bernoulli_(1.0 - self.p)
        return x * (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p} (paper section 4.2: zero in training, times {1 - self.p} at test time)"


class AlexNet(nn.Module):
    """The paper's net: five convolutional and three fully-connected layers (section 3.5). conf/model/alexnet.yaml
    says what each argument is. With ``columns=2`` (the two GPUs), conv2, conv4 and conv5 see only the kernel maps
    of their own column (grouped convolutions); conv3 and the FC layers see both. ``widths=None`` picks the
    paper's for the columns; ``PAPER_WIDTHS`` with ``columns=1`` is a one-column net of full width.
    """

    @checked
    def __init__(
        self,
        num_classes: PositiveInt = 1000,
        columns: Literal[1, 2] = 2,
        widths: Annotated[Sequence[PositiveInt], Len(5, 5)] | None = None,
        norm: Norm = "lrn",
        pooling: Pooling = "overlap",
        activation: Activation = "relu",
        init: Init = "paper",
        dropout: Annotated[float, Interval(ge=0, lt=1)] = DROPOUT,
        fc_width: PositiveInt | None = None,
        input_size: InputSize = PAPER_INPUT_SIZE,
        lrn: Literal["paper", "caffe"] = "paper",
        dropout_form: Literal["paper", "inverted"] = "paper",
    ) -> None:
        super().__init__()
        self.columns, self.input_size, self.activation, self.init = columns, input_size, activation, init
        c1, c2, c3, c4, c5 = widths if widths is not None else PAPER_WIDTHS if columns == 2 else ONE_GPU_WIDTHS
        fc_width = FC_WIDTH if fc_width is None else fc_width

        act = ACTIVATIONS[activation]
        # Section 3.4: s = 2, z = 3 overlaps; s = z = 2 is the traditional non-overlapping scheme. Both give the
        # same 27/13/6 maps from 55/27/13. MaxPool2d's stride defaults to its window.
        pool = (lambda: nn.MaxPool2d(3, stride=2)) if pooling == "overlap" else (lambda: nn.MaxPool2d(2))

        def norm_layer(channels: int) -> nn.Module:
            if norm == "lrn":
                return PaperLRN(columns=columns) if lrn == "paper" else PaperLRN.caffe()
            return nn.BatchNorm2d(channels) if norm == "bn" else nn.Identity()

        drop = (lambda: PaperDropout(dropout)) if dropout_form == "paper" else (lambda: nn.Dropout(dropout))
        pad = nn.ZeroPad2d((0, 3, 0, 3)) if input_size == 224 else nn.Identity()  # left, right, top, bottom
        # Section 3.5: conv3 takes all kernel maps of conv2; conv2, conv4, conv5 only those of their column.
        self.features = nn.Sequential(OrderedDict([
            ("pad1", pad), ("conv1", nn.Conv2d(3, c1, kernel_size=11, stride=4)), ("act1", act()),
            ("norm1", norm_layer(c1)), ("pool1", pool()),
            ("conv2", nn.Conv2d(c1, c2, kernel_size=5, padding=2, groups=columns)), ("act2", act()),
            ("norm2", norm_layer(c2)), ("pool2", pool()),
            ("conv3", nn.Conv2d(c2, c3, kernel_size=3, padding=1)), ("act3", act()),
            ("conv4", nn.Conv2d(c3, c4, kernel_size=3, padding=1, groups=columns)), ("act4", act()),
            ("conv5", nn.Conv2d(c4, c5, kernel_size=3, padding=1, groups=columns)), ("act5", act()),
            ("pool5", pool()),
        ]))  # fmt: skip
        self.classifier = nn.Sequential(OrderedDict([
            ("fc6", nn.Linear(c5 * 6 * 6, fc_width)), ("act6", act()), ("drop6", drop()),
            ("fc7", nn.Linear(fc_width, fc_width)), ("act7", act()), ("drop7", drop()),
            ("fc8", nn.Linear(fc_width, num_classes)),
        ]))  # fmt: skip
        self.reset_parameters()

    @property
    def layers(self) -> dict[str, nn.Conv2d | nn.Linear]:
        modules = {**dict(self.features.named_children()), **dict(self.classifier.named_children())}
        return {name: m for name, m in modules.items() if isinstance(m, nn.Conv2d | nn.Linear)}

    def reset_parameters(self) -> None:
        bias, fc_std = INITS[self.init]
        for name, layer in self.layers.items():
            assert layer.bias is not None
            if fc_std is None:  # Kaiming normal, with ReLU's gain for all but tanh (GELU, SiLU: near ReLU's)
                nn.init.kaiming_normal_(layer.weight, nonlinearity="tanh" if self.activation == "tanh" else "relu")
            else:
                nn.init.normal_(layer.weight, std=fc_std if name in ("fc6", "fc7") else INIT_STD)  # mean 0
            nn.init.constant_(layer.bias, bias if name in BIASED_LAYERS else 0.0)

    in_channels = 3

    def hidden(self, images: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations: FC7's 4096 outputs after the ReLU (section 6.1 compares images
        by the Euclidean distance between these vectors)."""
        through_act7 = [name for name, _ in self.classifier.named_children()].index("act7") + 1
        return self.classifier[:through_act7](torch.flatten(self.features(images), 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(images), 1))
