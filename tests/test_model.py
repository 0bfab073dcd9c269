"""The backbone against the paper's section 3 (architecture) and section 5 (initialisation)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from alexnet_lab.models.alexnet import AlexNet, PaperDropout, PaperLRN

# Section 3.5, as written: kernels (count, height, width, depth seen by each kernel) of conv1..conv5.
# conv2, conv4, conv5 only see the 48 / 192 / 192 maps of their own GPU; conv3 sees all 256 maps.
PAPER_CONV_KERNELS = [(96, 11, 11, 3), (256, 5, 5, 48), (384, 3, 3, 256), (384, 3, 3, 192), (256, 3, 3, 192)]
PAPER_FC = 4096  # "The fully-connected layers have 4096 neurons each."
IMAGENET_CLASSES = 1000
POOLED = 6  # conv5's 13x13 maps after the last max-pooling


def count(conv_kernels: list[tuple[int, int, int, int]], classes: int = IMAGENET_CLASSES) -> int:
    conv = sum(n * h * w * d + n for n, h, w, d in conv_kernels)
    fc_in = conv_kernels[-1][0] * POOLED * POOLED
    return conv + (fc_in * PAPER_FC + PAPER_FC) + (PAPER_FC * PAPER_FC + PAPER_FC) + (PAPER_FC * classes + classes)


def one_column(kernel_counts: list[int], kernel_sizes: list[int]) -> list[tuple[int, int, int, int]]:
    """One column sees every map of the layer below."""
    depths = [3, *kernel_counts[:-1]]
    return [(n, k, k, d) for n, k, d in zip(kernel_counts, kernel_sizes, depths, strict=True)]


SIZES = [11, 5, 3, 3, 3]
PAPER_COUNTS = [k[0] for k in PAPER_CONV_KERNELS]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_two_column_parameter_count_matches_the_papers_layers() -> None:
    expected = count(PAPER_CONV_KERNELS)
    assert expected == 60_965_224
    assert n_params(AlexNet(columns=2)) == expected


def test_one_gpu_baseline_halves_conv1_to_conv4_only() -> None:
    # Section 3.2 footnote: half the kernels in conv1..conv4; conv5 and the FC layers keep their width.
    counts = [n // 2 for n in PAPER_COUNTS[:4]] + [PAPER_COUNTS[4]]
    expected = count(one_column(counts, SIZES))
    assert n_params(AlexNet(columns=1)) == expected
    assert expected < count(PAPER_CONV_KERNELS)


def test_one_column_full_width_net() -> None:
    expected = count(one_column(PAPER_COUNTS, SIZES))
    assert n_params(AlexNet(columns=1, widths=PAPER_COUNTS)) == expected
    assert expected > count(PAPER_CONV_KERNELS)  # the two-column split removes cross-GPU kernel weights


def test_num_classes_sets_fc8() -> None:
    assert AlexNet(num_classes=10)(torch.zeros(1, 3, 224, 224)).shape == (1, 10)


@pytest.mark.parametrize("pooling", ["overlap", "nonoverlap"])
@pytest.mark.parametrize("columns", [1, 2])
@pytest.mark.parametrize("input_size", [224, 227])
def test_feature_map_sizes(pooling: str, columns: int, input_size: int) -> None:
    net = AlexNet(num_classes=10, columns=columns, pooling=pooling, input_size=input_size)
    sizes: dict[str, int] = {}
    for name, module in net.features.named_children():
        if name.startswith(("conv", "pool")):
            module.register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(name, o.shape[-1]))
    net(torch.zeros(1, 3, input_size, input_size))
    # Section 3.5 / figure 2: 55x55 after conv1, 27 after pooling, 13 after the second pooling, 6 at the end.
    assert sizes == {"conv1": 55, "pool1": 27, "conv2": 27, "pool2": 13, "conv3": 13, "conv4": 13, "conv5": 13,
                     "pool5": 6}  # fmt: skip


def test_224_reading_pads_conv1_right_and_bottom_as_cuda_convnet() -> None:
    # Section 4.1: 224x224 patches of the 256x256 images, "a factor of 2048" more training examples.
    assert (256 - 224) ** 2 * 2 == 2048
    # cuda-convnet: 1 + ceil((2 * padding + size - filter) / stride) filter positions per row.
    assert 1 + math.ceil((2 * 0 + 224 - 11) / 4) == 55
    assert n_params(AlexNet(input_size=224)) == n_params(AlexNet(input_size=227)) == count(PAPER_CONV_KERNELS)
    torch.manual_seed(0)
    net = AlexNet(num_classes=10, input_size=224)
    x = torch.randn(1, 3, 224, 224)
    maps = net.features.conv1(net.features.pad1(x))
    w, b = net.features.conv1.weight, net.features.conv1.bias
    # position 0 reads pixels 0..10; the last, 54, reads 216..226: 216..223 of the image, then 3 zeros
    first = (x[0, :, :11, :11] * w).sum(dim=(1, 2, 3)) + b
    corner = torch.zeros(3, 11, 11)
    corner[:, :8, :8] = x[0, :, 216:, 216:]
    last = (corner * w).sum(dim=(1, 2, 3)) + b
    assert torch.allclose(maps[0, :, 0, 0], first, atol=1e-5) and torch.allclose(maps[0, :, 54, 54], last, atol=1e-5)
    assert isinstance(AlexNet(input_size=227).features.pad1, nn.Identity)


def test_pooling_windows() -> None:
    def pools(net: AlexNet) -> set[tuple[int, int]]:
        return {(m.kernel_size, m.stride) for m in net.modules() if isinstance(m, nn.MaxPool2d)}  # type: ignore

    assert pools(AlexNet(pooling="overlap")) == {(3, 2)}  # section 3.4: z = 3, s = 2
    assert pools(AlexNet(pooling="nonoverlap")) == {(2, 2)}  # s = z = 2


def test_columns_only_see_their_own_maps_in_conv2_conv4_conv5() -> None:
    torch.manual_seed(0)
    net = AlexNet(num_classes=10, columns=2)
    for layer, maps_in in (("conv2", 96), ("conv4", 384), ("conv5", 384)):
        conv = net.layers[layer]
        x = torch.randn(1, maps_in, 13, 13)
        y = conv(x)
        x2 = x.clone()
        x2[:, : maps_in // 2] += 1.0  # disturb only the first column's maps
        y2 = conv(x2)
        half = y.shape[1] // 2
        assert torch.equal(y[:, half:], y2[:, half:]), f"{layer}: second column saw the first column's maps"
        assert not torch.equal(y[:, :half], y2[:, :half])
    conv3 = net.layers["conv3"]
    x = torch.randn(1, 256, 13, 13)
    x2 = x.clone()
    x2[:, :128] += 1.0
    assert not torch.equal(conv3(x)[:, 192:], conv3(x2)[:, 192:]), "conv3 must see both columns"


def paper_lrn(a: torch.Tensor, k: float = 2.0, n: int = 5, alpha: float = 1e-4, beta: float = 0.75) -> torch.Tensor:
    """Section 3.3, literally: b_i = a_i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j^2)^beta."""
    maps = a.shape[1]
    out = torch.empty_like(a)
    for i in range(maps):
        lo, hi = max(0, i - n // 2), min(maps - 1, i + n // 2)
        out[:, i] = a[:, i] / (k + alpha * (a[:, lo : hi + 1] ** 2).sum(dim=1)) ** beta
    return out


def test_lrn_equals_the_papers_formula() -> None:
    torch.manual_seed(0)
    a = torch.randn(2, 16, 7, 7, dtype=torch.float64) * 60  # large activations, so the alpha term matters
    got = PaperLRN().double()(a)
    assert torch.allclose(got, paper_lrn(a), rtol=1e-10, atol=0)
    plain_torch = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a)
    assert not torch.allclose(plain_torch, paper_lrn(a), rtol=1e-3), "torch divides alpha by n"


@pytest.mark.parametrize("maps", [16, 3, 2, 1])  # 3, 2, 1: fewer maps than the window
def test_lrn_gradient_equals_autograd_through_the_papers_formula(maps: int) -> None:
    torch.manual_seed(0)
    a = torch.randn(2, maps, 5, 5, dtype=torch.float64) * 60
    grad = torch.randn_like(a)
    ours, literal = a.clone().requires_grad_(), a.clone().requires_grad_()
    PaperLRN()(ours).backward(grad)
    paper_lrn(literal).backward(grad)
    assert torch.allclose(ours.grad, literal.grad, rtol=1e-10, atol=1e-14)
    wide = PaperLRN(alpha=1e-2)  # a strong normalisation, so the second term of the gradient dominates
    assert torch.autograd.gradcheck(wide, (a[:1, :, :2, :2].clone().requires_grad_(),))
    channels_last = a.contiguous(memory_format=torch.channels_last).requires_grad_()
    PaperLRN()(channels_last).backward(grad)
    assert torch.allclose(channels_last.grad, literal.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled-stencil"])
@pytest.mark.parametrize("size", [5, 4, 1])
@pytest.mark.parametrize("maps", [16, 3, 1])
def test_lrn_gradient_equals_autograd_through_torchs_own_lrn_for_any_window(
    maps: int, size: int, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both backward passes, against autograd through torch's local_response_norm (the same windows: an even
    window reaches one map further back than forward): the eager one, and the stencil that torch.compile runs
    (_LRN.backward takes it where torch.compiler.is_compiling(); here run eagerly, in float64)."""
    torch.manual_seed(0)
    a = torch.randn(2, maps, 3, 3, dtype=torch.float64) * 60
    grad = torch.randn_like(a)
    alpha, beta, k = 1e-2, 0.75, 2.0  # a strong normalisation: the gradient's second term matters
    torchs = a.clone().requires_grad_()
    F.local_response_norm(torchs, size, alpha * size, beta, k).backward(grad)
    if compiled:
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    ours = a.clone().requires_grad_()
    PaperLRN(size, alpha, beta, k)(ours).backward(grad)
    assert torch.allclose(ours.grad, torchs.grad, rtol=1e-10, atol=1e-14)


def test_lrn_does_not_cross_the_columns() -> None:
    # Two GPUs, each normalising the maps it holds: no window spans maps 47 and 48 (conv1) or 127 and 128 (conv2).
    torch.manual_seed(0)
    for maps in (96, 256):
        lrn, half = PaperLRN(columns=2).double(), maps // 2
        a = torch.randn(2, maps, 5, 5, dtype=torch.float64) * 60
        out = lrn(a)
        assert torch.allclose(out[:, :half], paper_lrn(a[:, :half]), rtol=1e-10, atol=0)
        assert torch.allclose(out[:, half:], paper_lrn(a[:, half:]), rtol=1e-10, atol=0)
        for changed, kept in ((slice(half, None), slice(None, half)), (slice(None, half), slice(half, None))):
            other = a.clone()
            other[:, changed] *= 3.0
            assert torch.equal(lrn(other)[:, kept], out[:, kept]), "a column's maps changed the other column's"
    assert not torch.allclose(PaperLRN(columns=1).double()(a)[:, half - 2 : half + 2],
                              out[:, half - 2 : half + 2]), "one window over all maps mixes them"  # fmt: skip
    assert AlexNet(columns=2).features.norm1.columns == 2 and AlexNet(columns=1).features.norm2.columns == 1


def test_lrn_in_bf16_computes_in_fp32_and_rounds_once() -> None:
    """Under autocast conv1 and conv2 give bf16 maps: the normalisation is the paper's formula evaluated in
    float64 and rounded to bf16 once (at most one bf16 step away where fp32 lands near a rounding boundary),
    and its gradient reaches the bf16 maps."""
    torch.manual_seed(0)
    a = (torch.randn(2, 96, 7, 7) * 60).bfloat16().requires_grad_()
    out = PaperLRN(columns=2)(a)
    assert out.dtype == torch.bfloat16
    exact = torch.cat([paper_lrn(a[:, :48].double()), paper_lrn(a[:, 48:].double())], dim=1)
    rounded = exact.bfloat16()
    step = (rounded.double().abs() * 2**-7).clamp_min(1e-30)  # bf16 keeps 8 significant bits
    off = ((out.double() - rounded.double()).abs() / step).detach()
    assert off.max() <= 1 and (off == 0).float().mean() > 0.99
    # computed in bf16 throughout, the same normalisation is several steps off in places
    in_bf16 = paper_lrn(a[:, :48].detach())
    assert ((in_bf16.double() - rounded[:, :48].double()).abs() / step[:, :48]).max() > 1
    out.float().sum().backward()
    assert a.grad is not None and a.grad.dtype == torch.bfloat16 and torch.isfinite(a.grad.float()).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the whole net as trainer.precision=bf16-mixed runs it
        net = AlexNet(columns=2, num_classes=10, widths=(16, 32, 32, 32, 16), fc_width=64)
        maps = net.features[:4](torch.randn(2, 3, 224, 224))
    assert maps.dtype == torch.bfloat16


# Section 3.5: the maps that the paper normalises, per image: conv1's 96 of 55x55 and conv2's 256 of 27x27.
LRN_SHAPES = {"conv1": (96, 55, 55), "conv2": (256, 27, 27)}


def per_column(a: torch.Tensor, columns: int) -> torch.Tensor:
    """The formula evaluated on each column's maps alone, in float64."""
    return torch.cat([paper_lrn(part) for part in a.double().chunk(columns, dim=1)], dim=1)


def lrn_against_float64(lrn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...], columns: int,
                        dtype: torch.dtype) -> None:  # fmt: skip
    """Forward and gradient of ``lrn`` on maps of ``dtype`` (bf16 under autocast, as trainer.precision=bf16-mixed
    hands them over) against section 3.3's formula in float64 on the same values: fp32 within 1e-5 relative,
    bf16 within one bf16 step of the exact value (computed in fp32, rounded once)."""
    torch.manual_seed(0)
    a = (torch.randn(2, *shape) * 60).to(dtype).requires_grad_()
    grad = torch.randn(2, *shape).to(dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = lrn(a)
    out.backward(grad)
    exact_in = a.detach().double().requires_grad_()
    exact = per_column(exact_in, columns)
    exact.backward(grad.double())
    assert out.dtype == dtype and a.grad is not None and a.grad.dtype == dtype and exact_in.grad is not None
    step = 2**-8 if dtype == torch.bfloat16 else 1e-5
    for got, want in ((out, exact), (a.grad, exact_in.grad)):
        off = (got.double() - want.detach()).abs()
        assert (off <= step * want.detach().abs() + 1e-6 * want.detach().abs().max()).all(), off.max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("layer", sorted(LRN_SHAPES))
@pytest.mark.parametrize("columns", [2, 1], ids=["two-columns", "one-column"])
def test_lrn_and_its_gradient_at_the_papers_shapes_equal_the_formula_in_float64(
    columns: int, layer: str, dtype: torch.dtype
) -> None:
    lrn_against_float64(PaperLRN(columns=columns), LRN_SHAPES[layer], columns, dtype)


@pytest.mark.slow(40)
@pytest.mark.parametrize(
    ("columns", "layer", "dtype"),
    [
        (2, "conv1", torch.float32),
        (2, "conv2", torch.bfloat16),
        (1, "conv1", torch.bfloat16),
        (1, "conv2", torch.float32),
    ],
)
def test_compiled_lrn_is_one_kernel_each_way_and_equals_the_formula(
    columns: int, layer: str, dtype: torch.dtype
) -> None:
    """Under torch.compile (inductor, on the CPU here) the normalisation reads and writes the maps once each way:
    one generated kernel forward, one backward, computing in fp32 whatever the maps' dtype."""
    import torch._inductor.config
    import torch._inductor.metrics

    torch._dynamo.reset()
    compiled = torch.compile(PaperLRN(columns=columns))
    forward: list[int] = []  # the kernels generated by the time the forward pass returns

    def counted(maps: torch.Tensor) -> torch.Tensor:
        out = compiled(maps)
        forward.append(torch._inductor.metrics.generated_kernel_count)
        return out

    with torch._inductor.config.patch(force_disable_caches=True):  # a cached graph generates no kernels
        torch._inductor.metrics.reset()
        lrn_against_float64(counted, LRN_SHAPES[layer], columns, dtype)  # one forward pass, one backward
    assert (forward, torch._inductor.metrics.generated_kernel_count - forward[0]) == ([1], 1)


@pytest.mark.slow(30)
def test_the_compiled_net_compiles_once_with_both_lrn_shapes() -> None:
    """conv1's and conv2's normalisations are two places in one compiled graph: the second shape recompiles
    nothing (a PaperLRN compiled alone and handed a second shape would recompile for it)."""
    torch._dynamo.reset()
    net = AlexNet(columns=2, num_classes=10, fc_width=16)
    features = torch.compile(net.features[:8])  # through norm2
    assert [type(m) for m in net.features[:8]].count(PaperLRN) == 2
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(2):
            features(torch.randn(1, 3, 224, 224)).sum().backward()


def test_caffe_lrn_is_torchs_and_caffes_formula() -> None:
    # Caffe: scale = k + alpha / n * sum (k = 1), across the whole layer: what torch.nn.LocalResponseNorm computes
    torch.manual_seed(0)
    a = torch.randn(2, 96, 5, 5, dtype=torch.float64) * 60
    caffe = PaperLRN.caffe().double()
    assert torch.allclose(caffe(a), nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)(a), rtol=1e-10)
    assert torch.allclose(caffe(a), paper_lrn(a, k=1.0, alpha=1e-4 / 5), rtol=1e-10)
    net = AlexNet(columns=2, lrn="caffe")
    assert net.features.norm1.columns == 1 and net.features.norm1.k == 1.0


@pytest.mark.parametrize("settings", [{}, {"n": 3, "alpha": 1e-3, "beta": 0.5, "k": 1.0}])
def test_paper_lrn_is_a_local_response_norm_whose_attributes_mean_what_torchs_do(settings: dict) -> None:
    """Any n, alpha, beta, k: section 3.3's formula; and, a PaperLRN being an nn.LocalResponseNorm, torch's own
    forward given its size, alpha, beta and k computes the same maps (torch divides alpha by n, so PaperLRN
    holds alpha * n there)."""
    torch.manual_seed(0)
    a = torch.randn(2, 16, 5, 5, dtype=torch.float64) * 60
    lrn = PaperLRN(**{"size" if key == "n" else key: value for key, value in settings.items()}).double()
    assert torch.allclose(lrn(a), paper_lrn(a, **settings), rtol=1e-10, atol=0)
    assert torch.allclose(nn.LocalResponseNorm.forward(lrn, a), lrn(a), rtol=1e-10, atol=0)


def test_norm_placement() -> None:
    def kinds(net: AlexNet) -> list[str]:
        return [name for name, m in net.features.named_children() if name.startswith("norm")
                and not isinstance(m, nn.Identity)]  # fmt: skip

    assert kinds(AlexNet(norm="lrn")) == ["norm1", "norm2"]  # after conv1's and conv2's ReLU
    assert isinstance(AlexNet(norm="lrn").features.norm1, PaperLRN)
    bn = AlexNet(norm="bn")
    assert [type(bn.features.norm1), type(bn.features.norm2)] == [nn.BatchNorm2d, nn.BatchNorm2d]
    assert kinds(AlexNet(norm="none")) == []
    names = list(AlexNet().features._modules)
    assert names.index("act1") < names.index("norm1") < names.index("pool1")


def test_activation_everywhere_the_paper_has_relu() -> None:
    relu = [m for m in AlexNet(activation="relu").modules() if isinstance(m, nn.ReLU | nn.Tanh)]
    tanh = [m for m in AlexNet(activation="tanh").modules() if isinstance(m, nn.ReLU | nn.Tanh)]
    assert len(relu) == len(tanh) == 7  # conv1..conv5, FC6, FC7
    assert all(isinstance(m, nn.ReLU) for m in relu) and all(isinstance(m, nn.Tanh) for m in tanh)


@pytest.mark.parametrize("form", ["paper", "inverted"])
def test_dropout_in_fc6_and_fc7(form: str) -> None:
    net = AlexNet(dropout_form=form)
    drops = [(name, m) for name, m in net.classifier.named_children() if name.startswith("drop")]
    assert [name for name, _ in drops] == ["drop6", "drop7"]  # section 4.2: the first two FC layers
    assert all(m.p == 0.5 for _, m in drops)  # "with probability 0.5"


def test_dropout_forms_in_training_and_at_test_time() -> None:
    # Section 4.2: zero with probability 0.5 in training; at test time all neurons, outputs multiplied by 0.5.
    torch.manual_seed(0)
    x = torch.rand(2000, 64) + 1.0  # no zeros of its own
    paper, inverted = PaperDropout(0.5), nn.Dropout(0.5)
    train = paper.train()(x)
    kept = train != 0
    assert torch.equal(train[kept], x[kept]), "kept outputs are not scaled in training"
    assert kept.float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert torch.equal(paper.eval()(x), x * 0.5)
    train = inverted.train()(x)
    kept = train != 0
    assert torch.allclose(train[kept], 2 * x[kept]) and torch.equal(inverted.eval()(x), x)
    # the two nets' expected outputs agree at test time only up to the factor the paper applies there
    assert torch.allclose(paper.eval()(x), 0.5 * inverted.eval()(x))


@pytest.mark.parametrize("p", [0.3, 0.5, 0.7])
def test_paper_dropout_keeps_1_minus_p_and_scales_by_it_at_test_time(p: float) -> None:
    """Section 4.2's form for any p: zero with probability p in training (a binomial count of the kept, 5 sds),
    every output times 1 - p at test time; at p = 0.5 a mix-up of p and 1 - p would not show."""
    torch.manual_seed(0)
    x = torch.rand(400, 100) + 1.0
    dropout = PaperDropout(p)
    kept = (dropout.train()(x) != 0).sum().item()
    n = x.numel()
    assert abs(kept - n * (1 - p)) < 5 * (n * p * (1 - p)) ** 0.5
    assert torch.allclose(dropout.eval()(x), x * (1 - p), rtol=0, atol=1e-7)
    assert f"times {1 - p} at test time" in repr(dropout)  # what print(net) tells a user


@pytest.mark.parametrize("form", ["paper", "inverted"])
def test_hidden_is_fc7_after_its_relu(form: str) -> None:
    """Figure 4 ranks the last hidden layer: FC7's outputs after the ReLU, computed here layer by layer, with the
    test-time dropout of each form in between (the paper's halves FC6's outputs)."""
    torch.manual_seed(0)
    net = AlexNet(num_classes=5, widths=[8, 8, 8, 8, 8], fc_width=16, dropout_form=form).eval()
    images = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        fc6 = torch.relu(net.classifier.fc6(torch.flatten(net.features(images), 1)))
        fc7 = torch.relu(net.classifier.fc7(fc6 * (0.5 if form == "paper" else 1.0)))
        assert torch.allclose(net.hidden(images), fc7, atol=1e-6) and fc7.shape == (3, 16)


def test_paper_init() -> None:
    torch.manual_seed(0)
    net = AlexNet(init="paper")
    # Section 5: "zero-mean Gaussian distribution with standard deviation 0.01"; "neuron biases in the second,
    # fourth, and fifth convolutional layers, as well as in the fully-connected hidden layers, with the
    # constant 1. We initialized the neuron biases in the remaining layers with the constant 0."
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
    for name, layer in net.layers.items():
        w = layer.weight.detach()
        assert abs(w.mean().item()) < 5 * 0.01 / math.sqrt(w.numel()), name
        assert w.std().item() == pytest.approx(0.01, rel=0.03), name
        assert torch.all(layer.bias == (1.0 if name in ones else 0.0)), name


def test_caffe_init_is_bvlc_alexnets_fillers() -> None:
    """models/bvlc_alexnet/train_val.prototxt, layer by layer: weight_filler gaussian std, bias_filler value."""
    torch.manual_seed(0)
    caffe = AlexNet(init="caffe")
    fillers = {"conv1": (0.01, 0.0), "conv2": (0.01, 0.1), "conv3": (0.01, 0.0), "conv4": (0.01, 0.1),
               "conv5": (0.01, 0.1), "fc6": (0.005, 0.1), "fc7": (0.005, 0.1), "fc8": (0.01, 0.0)}  # fmt: skip
    assert list(caffe.layers) == list(fillers)
    for name, (std, bias) in fillers.items():
        assert caffe.layers[name].weight.std().item() == pytest.approx(std, rel=0.03), name
        assert torch.all(caffe.layers[name].bias == bias), name


def test_kaiming_init() -> None:
    torch.manual_seed(0)
    kaiming = AlexNet(init="kaiming")
    conv3 = kaiming.layers["conv3"].weight
    assert conv3.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.03)
    assert all(torch.all(layer.bias == 0) for layer in kaiming.layers.values())
    # He et al.'s gain is the activation's: 5/3 for tanh (torch.nn.init.calculate_gain), not ReLU's sqrt(2)
    tanh = AlexNet(init="kaiming", activation="tanh").layers["conv3"].weight
    assert tanh.std().item() == pytest.approx(5 / 3 / math.sqrt(256 * 9), rel=0.03)
    # a choice added as docs/extending.md adds GELU: ReLU's gain (GELU is ReLU above 0), not tanh's
    kaiming.activation = "gelu"
    kaiming.reset_parameters()
    assert kaiming.layers["conv3"].weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.03)


@pytest.mark.parametrize(
    "bad",
    [
        {"norm": "group"},
        {"pooling": "avg"},
        {"activation": "gelu"},
        {"columns": 3},
        {"input_size": 225},
        {"lrn": "torch"},
        {"dropout_form": "scaled"},
    ],
)
def test_unknown_choices_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="|".join(str(v) for v in bad.values())):
        AlexNet(**bad)  # type: ignore[arg-type]


def test_torchvisions_alexnet_hidden_is_what_its_last_layer_reads() -> None:
    """Figure 4 for model=torchvision_alexnet: hidden() is FC7 after its ReLU, the input of torchvision's own
    last layer, so that layer applied to it gives torchvision's forward."""
    from alexnet_lab.models.torchvision_alexnet import TorchvisionAlexNet

    torch.manual_seed(0)
    net = TorchvisionAlexNet(num_classes=7).eval()
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        hidden = net.hidden(images)
        assert hidden.shape == (2, 4096) and bool((hidden >= 0).all()) and bool((hidden > 0).any())
        assert torch.allclose(net.classifier[-1](hidden), torchvision.models.AlexNet.forward(net, images), atol=1e-5)
