"""Backbones: shapes per preset, torchvision-compatible keys, checkpoint loading, PredNet's
recurrence, loss weighting and ConvLSTM. Oracles are hard-coded torchvision definitions,
closed forms, torch.nn.LSTMCell and properties that follow from the paper's equations."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from harness.config import ConfigError
from harness.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODEL_PRESETS,
    MODEL_REGISTRY,
    ConvLSTMCell,
    ModelError,
    PredNet,
    build_model,
    load_matching_state_dict,
    model_cost,
    prednet_loss,
)

ARCHS = ("alexnet", "vgg19_teacher", "prednet")

# torchvision.models.alexnet(num_classes=1000).state_dict(), keys and shapes, written out
# from torchvision's definition (the oracle; torchvision itself is never imported).
TORCHVISION_ALEXNET = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}  # fmt: skip
TORCHVISION_ALEXNET_PARAMS = 61_100_840  # torchvision's documented parameter count

# torchvision.models.vgg19 (config "E"): conv widths in order, their features.N indices
VGG19_CONV_INDEX = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
VGG19_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)


def torchvision_vgg19_shapes(num_classes=1000):
    shapes, in_ch = {}, 3
    for idx, out_ch in zip(VGG19_CONV_INDEX, VGG19_WIDTHS):
        shapes[f"features.{idx}.weight"] = (out_ch, in_ch, 3, 3)
        shapes[f"features.{idx}.bias"] = (out_ch,)
        in_ch = out_ch
    for idx, (o, i) in zip((0, 3, 6), ((4096, 512 * 7 * 7), (4096, 4096), (num_classes, 4096))):
        shapes[f"classifier.{idx}.weight"] = (o, i)
        shapes[f"classifier.{idx}.bias"] = (o,)
    return shapes


def normalise(pixels):
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (pixels - mean) / std


def make_input(model, batch, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    if model.arch == "prednet":
        return normalise(torch.rand(batch, model.clip_length, 3, size, size, generator=g))
    return normalise(torch.rand(batch, 3, size, size, generator=g))


# ---------------------------------------------------------------- shapes and contract


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("preset", ["smoke", "tiny"])
def test_forward_shapes_and_contract(arch, preset):
    torch.manual_seed(0)
    model = build_model(arch, 5, preset).eval()
    size = MODEL_PRESETS[preset].input_size
    x = make_input(model, 2, size)
    with torch.no_grad():
        out = model.forward_features(x)
        logits = model(x)
    c4, h, w = model.conv4_shape()
    assert out.logits.shape == (2, 5) and logits.shape == (2, 5)
    assert torch.equal(out.logits, logits)
    assert out.conv4.shape == (2, model.conv4_channels, h, w) and c4 == model.conv4_channels
    assert out.embedding.shape == (2, model.embedding_dim)
    # the spatial map must support a softmax over positions (S well above 1)
    assert h * w >= 9
    assert model.clip_length == (MODEL_PRESETS[preset].prednet.clip_length if arch == "prednet" else 1)


@pytest.mark.parametrize("arch", ARCHS)
def test_paper_shapes_by_shape_arithmetic(arch):
    # meta tensors: shapes are propagated, nothing is computed or allocated
    with torch.device("meta"):
        model = build_model(arch, 101, "paper").eval()
        x = torch.zeros((1, model.clip_length, 3, 224, 224) if arch == "prednet" else (1, 3, 224, 224))
    out = model.forward_features(x)
    expected = {"alexnet": (256, 13, 13), "vgg19_teacher": (256, 28, 28), "prednet": (192, 28, 28)}[arch]
    assert tuple(out.conv4.shape) == (1, *expected) == (1, *model.conv4_shape())
    assert tuple(out.logits.shape) == (1, 101)
    assert out.embedding.shape[1] == {"alexnet": 4096, "vgg19_teacher": 4096, "prednet": 192}[arch]


def test_alexnet_paper_real_forward_batch1():
    torch.manual_seed(0)
    model = build_model("alexnet", 1000, "paper").eval()
    with torch.no_grad():
        out = model.forward_features(make_input(model, 1, 224))
    assert out.conv4.shape == (1, 256, 13, 13) and out.logits.shape == (1, 1000)


@pytest.mark.parametrize("preset", ["smoke", "tiny", "paper"])
def test_alexnet_forward_stages_equals_forward_features(preset):
    """forward_stages (staged-kd's substages conv1..conv4) adds maps, changes nothing else."""
    torch.manual_seed(0)
    model = build_model("alexnet", 5, preset).eval()      # tiny has batch norm, smoke and paper do not
    keys = list(model.state_dict())
    size = 64 if preset == "paper" else MODEL_PRESETS[preset].input_size   # any size works for the check
    x = make_input(model, 2, size)
    with torch.no_grad():
        out = model.forward_features(x)
        staged, relu_maps = model.forward_stages(x)
        pooled, pool_maps = model.forward_stages(x, "pool")
    for other in (staged, pooled):
        assert all(torch.equal(a, b) for a, b in zip(out, other))   # logits, conv4, embedding
    assert list(model.state_dict()) == keys
    assert [m.shape[1] for m in relu_maps] == list(model.stage_channels) == [m.shape[1] for m in pool_maps]
    assert torch.equal(relu_maps[-1], out.conv4) and torch.equal(pool_maps[-1], out.conv4)
    for j in (0, 1):   # conv1 and conv2 are followed by MaxPool(3, 2); "pool" taps after it
        assert torch.equal(pool_maps[j], nn.functional.max_pool2d(relu_maps[j], 3, 2))
        assert (relu_maps[j] >= 0).all()
    assert torch.equal(relu_maps[2], pool_maps[2])
    with pytest.raises(ModelError, match="stage point must be one of relu, pool"):
        model.forward_stages(x, "conv5")


@pytest.mark.parametrize("arch,conv4_conv", [("alexnet", "features.8"), ("vgg19_teacher", "features.25")])
def test_conv4_is_the_relu_of_the_named_conv(arch, conv4_conv):
    torch.manual_seed(0)
    model = build_model(arch, 4, "smoke").eval()
    seen = {}

    def keep(name, value):
        seen[name] = value  # returns None: the hook must not replace the module's output

    modules = dict(model.named_modules())
    modules[conv4_conv].register_forward_hook(lambda m, i, o: keep("o", o))
    modules["classifier.6"].register_forward_hook(lambda m, i, o: keep("in", i[0]))
    with torch.no_grad():
        out = model.forward_features(make_input(model, 2, 32))
    assert torch.equal(out.conv4, torch.relu(seen["o"]))
    assert (out.conv4 >= 0).all()
    # the embedding is fc7 after ReLU; in eval the last Linear sees it unchanged
    assert torch.equal(out.embedding, seen["in"]) and (out.embedding >= 0).all()


def test_alexnet_paper_keys_and_shapes_match_torchvision():
    with torch.device("meta"):
        model = build_model("alexnet", 1000, "paper")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == TORCHVISION_ALEXNET
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_ALEXNET_PARAMS
    # module types at torchvision's indices
    f, c = model.features, model.classifier
    assert [type(f[i]) for i in (0, 3, 6, 8, 10)] == [nn.Conv2d] * 5
    assert [type(f[i]) for i in (2, 5, 12)] == [nn.MaxPool2d] * 3
    assert (f[0].stride, f[0].padding) == ((4, 4), (2, 2))
    assert [type(c[i]) for i in range(7)] == [nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Linear]


def test_vgg_teacher_layout_and_torchvision_compatibility():
    tv = torchvision_vgg19_shapes()
    with torch.device("meta"):
        paper = build_model("vgg19_teacher", 1000, "paper")
        wide = build_model("vgg19_teacher", 1000, "paper", conv4_channels=512)
    # paper modification: conv1 96 ch 11x11, block 1 96 ch, block 2 128 ch, block 4 256 ch
    sd = {k: tuple(v.shape) for k, v in paper.state_dict().items()}
    assert set(sd) == set(tv)
    assert sd["features.0.weight"] == (96, 3, 11, 11) and paper.features[0].padding == (5, 5)
    assert sd["features.2.weight"] == (96, 96, 3, 3)
    assert sd["features.5.weight"] == (128, 96, 3, 3)
    assert sd["features.25.weight"] == (256, 256, 3, 3) and paper.conv4_channels == 256
    assert sd["features.28.weight"] == (512, 256, 3, 3)
    # the 512 switch gives torchvision's layout from block 2's second conv on
    differing = {k for k, v in wide.state_dict().items() if tuple(v.shape) != tv[k]}
    assert differing == {"features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias",
                         "features.5.weight"}  # fmt: skip
    assert wide.conv4_channels == 512
    # a torchvision-shaped checkpoint loads whole layers whose shapes all match: features.5's
    # bias (128,) fits but its weight (128, 64) vs (128, 96) does not, so the layer is skipped
    fake = {k: torch.zeros(v, device="meta") for k, v in tv.items()}
    loaded, skipped = load_matching_state_dict(wide, fake)
    assert set(loaded) == set(tv) - differing - {"features.5.bias"}
    reasons = dict(skipped)
    assert set(reasons) == differing | {"features.5.bias"}
    assert reasons["features.5.bias"] == "shape matches but features.5.weight of the same layer does not"
    assert reasons["features.0.weight"] == "shape (64, 3, 3, 3) in checkpoint != (96, 3, 11, 11) in model"


def test_model_cost_matches_hand_count():
    model = build_model("alexnet", 10, "smoke")  # channels 8, 24, 48, 32, 32; hidden 64
    # conv1 (32 + 10 - 11) // 2 + 1 = 16 -> pool 7 -> conv2 7 -> pool 3 -> conv3..5 3 -> pool 1
    macs = 8 * 3 * 121 * 16**2 + 24 * 8 * 25 * 7**2 + (48 * 24 + 32 * 48 + 32 * 32) * 9 * 3**2
    macs += 32 * 64 + 64 * 64 + 64 * 10
    params = (8 * 3 * 121 + 8) + (24 * 8 * 25 + 24) + (48 * 24 * 9 + 48) + (32 * 48 * 9 + 32) + (32 * 32 * 9 + 32)
    params += (32 * 64 + 64) + (64 * 64 + 64) + (64 * 10 + 10)
    cost = model_cost(model)
    assert cost["params"] == params and cost["conv4"] == (32, 3, 3) and cost["embedding_dim"] == 64
    assert cost["mflops_per_frame"] == pytest.approx(2 * macs / 1e6)


# ---------------------------------------------------------------- build_model, registry


def test_registry_presets_and_overrides():
    assert set(ARCHS) <= set(MODEL_REGISTRY)
    assert {p: MODEL_PRESETS[p].input_size for p in ("smoke", "tiny", "paper")} == {"smoke": 32, "tiny": 64, "paper": 224}
    m = build_model("alexnet", 3, "smoke", width="0.25", hidden="32")  # strings as from --set
    assert m.conv4_channels == 64 and m.embedding_dim == 32
    assert build_model("alexnet", 3, "smoke", input_size=48).input_size == 48
    with pytest.raises(ModelError, match="unknown model arch 'resnet'"):
        build_model("resnet", 3)
    with pytest.raises(ConfigError, match="unknown config key 'depth'"):
        build_model("alexnet", 3, "smoke", depth=3)
    with pytest.raises(ConfigError, match="unknown preset"):
        build_model("alexnet", 3, "huge")


@pytest.mark.parametrize("arch", ARCHS)
def test_reset_classifier_keeps_everything_else(arch):
    torch.manual_seed(0)
    model = build_model(arch, 5, "smoke").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_classifier(7)
    after = model.state_dict()
    changed = {k for k in after if after[k].shape != before[k].shape or not torch.equal(after[k], before[k])}
    head = "classifier" if arch == "prednet" else "classifier.6"
    assert changed == {f"{head}.weight", f"{head}.bias"}
    with torch.no_grad():
        out = model.forward_features(make_input(model, 2, 32))
    assert out.logits.shape == (2, 7) and model.num_classes == 7


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_reaches_every_parameter(arch):
    torch.manual_seed(0)
    model = build_model(arch, 3, "smoke", dropout=0.0) if arch != "prednet" else build_model(arch, 3, "smoke")
    model.train()
    loss = model(make_input(model, 2, 32)).square().sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_inputs_are_one_line_model_errors():
    alex = build_model("alexnet", 3, "smoke")
    with pytest.raises(ModelError, match=r"alexnet: expected a float image batch \(B, 3, H, W\)"):
        alex(torch.zeros(1, 2, 3, 32, 32))
    pred = build_model("prednet", 3, "smoke")
    with pytest.raises(ModelError, match=r"prednet: expected a clip batch"):
        pred(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ModelError, match="divisible by 8"):
        pred(torch.zeros(1, 2, 3, 30, 32))


# ---------------------------------------------------------------- checkpoint loading


def test_load_matching_state_dict_copies_matches_and_reports_the_rest(tmp_path):
    torch.manual_seed(0)
    model = build_model("alexnet", 4, "smoke")
    own = {k: v.clone() for k, v in model.state_dict().items()}
    w0 = torch.randn(own["features.0.weight"].shape)
    b8 = torch.randn(own["features.8.bias"].shape)
    ckpt = {
        "module.features.0.weight": w0,  # DataParallel prefix
        "features.8.bias": b8,
        "features.3.weight": torch.randn(5, 5),  # wrong shape
        "fc.weight": torch.randn(3),  # not in the model
        "num_batches": 3,  # not a tensor
    }
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": ckpt}, path)
    for source in (ckpt, path, str(path)):
        model.load_state_dict(own)
        loaded, skipped = load_matching_state_dict(model, source)
        assert sorted(loaded) == ["features.0.weight", "features.8.bias"]
        reasons = dict(skipped)
        assert "shape (5, 5) in checkpoint" in reasons["features.3.weight"]
        assert reasons["fc.weight"] == "not in model"
        assert reasons["num_batches"].startswith("not a tensor")
        assert reasons["classifier.6.bias"].startswith("missing from checkpoint")
        sd = model.state_dict()
        assert torch.equal(sd["features.0.weight"], w0) and torch.equal(sd["features.8.bias"], b8)
        assert torch.equal(sd["features.3.weight"], own["features.3.weight"])


def test_load_checkpoint_file_errors_name_the_file(tmp_path):
    model = build_model("alexnet", 4, "smoke")
    with pytest.raises(ModelError, match=r"nope\.pth: torch checkpoint not found"):
        load_matching_state_dict(model, tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=r"bad\.pth: cannot read as a torch checkpoint"):
        load_matching_state_dict(model, bad)
    other = tmp_path / "other.pth"
    torch.save({"x.weight": torch.zeros(2)}, other)
    with pytest.raises(ModelError, match=r"other\.pth: no tensor matches"):
        load_matching_state_dict(model, other)


# ---------------------------------------------------------------- PredNet


def test_prednet_loss_weighting_on_hand_made_errors():
    b, t, n = 2, 4, 4
    errors = torch.arange(b * t * n, dtype=torch.float64).reshape(b, t, n) + 1.0
    # default: layer 0 only, t = 0 ignored, 1 / (T - 1) for t >= 1
    expected = sum(sum(errors[i, s, 0].item() for s in range(1, t)) / (t - 1) for i in range(b)) / b
    assert prednet_loss(errors).item() == pytest.approx(expected)
    # t = 0 and layers 1..3 contribute nothing
    bumped = errors.clone()
    bumped[:, 0, :] += 1000.0
    bumped[:, :, 1:] += 1000.0
    assert prednet_loss(bumped).item() == pytest.approx(expected)
    # general weights against a naive loop
    lw, tw = (0.5, 0.1, 0.0, 2.0), (0.3, 0.0, 1.0, 0.25)
    naive = sum(tw[s] * lw[l] * errors[i, s, l].item() for i in range(b) for s in range(t) for l in range(n)) / b
    assert prednet_loss(errors, lw, tw).item() == pytest.approx(naive)
    # a hand-computed case: B=1, T=3, L=1, errors 9, 2, 4 -> (2 + 4) / 2
    assert prednet_loss(torch.tensor([[[9.0], [2.0], [4.0]]]), (1.0,)).item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="layer weights"):
        prednet_loss(errors, (1.0, 0.0))


def test_prednet_outputs_and_error_units():
    torch.manual_seed(0)
    model = build_model("prednet", 3, "smoke").eval()
    a, r = model.config.stack, model.config.r_stack
    inputs = {}

    def keep(key, x):
        inputs[key] = x.shape  # returns None: the hook must not replace the module's input

    for l, conv in enumerate(model.a_convs):
        conv.register_forward_pre_hook(lambda m, i, l=l: keep(("a", l), i[0]))
    for l, cell in enumerate(model.cells):
        cell.conv.register_forward_pre_hook(lambda m, i, l=l: keep(("r", l), i[0]))
    clip = make_input(model, 2, 32)
    with torch.no_grad():
        out = model.predict(clip)
    t = model.clip_length
    assert out.errors.shape == (2, t, 4) and out.predictions.shape == (2, t, 3, 32, 32)
    assert [tuple(s.shape) for s in out.r_states] == [(2, r[l], 32 >> l, 32 >> l) for l in range(4)]
    for l in range(3):  # E_l has twice the channels of A_l
        assert inputs[("a", l)][1] == 2 * a[l]
    for l in range(4):  # ConvLSTM input: [E_l(t-1); Upsample(R_{l+1}(t)); R_l(t-1)]
        assert inputs[("r", l)][1] == 2 * a[l] + (r[l + 1] if l < 3 else 0) + r[l]
    # E_0 = [ReLU(A - Â); ReLU(Â - A)] has 2x the elements and sums to |A - Â|, so its mean
    # is half the mean absolute prediction error in pixel space
    pixels = clip * torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
    mae = (pixels - out.predictions).abs().mean(dim=(2, 3, 4))
    torch.testing.assert_close(out.errors[:, :, 0], 0.5 * mae)


def test_prednet_satlu_clips_layer0_only_at_pixel_max():
    model = build_model("prednet", 3, "smoke").eval()
    clip = make_input(model, 1, 32)
    with torch.no_grad():
        model.ahat_convs[0].weight.zero_()
        model.ahat_convs[0].bias.fill_(5.0)
        assert torch.equal(model.predict(clip).predictions, torch.ones(1, model.clip_length, 3, 32, 32))
        model.ahat_convs[0].bias.fill_(-5.0)  # ReLU floor
        assert torch.equal(model.predict(clip).predictions, torch.zeros(1, model.clip_length, 3, 32, 32))
        # a higher layer is not clipped: Â_1 = 5 everywhere shows up in E_1 as 5 - A_1 > 1
        seen = []
        model.ahat_convs[1].register_forward_hook(lambda m, i, o: seen.append(o))  # append -> None
        model.ahat_convs[1].weight.zero_()
        model.ahat_convs[1].bias.fill_(5.0)
        model.predict(clip)
    assert seen[0].max().item() == 5.0


def test_prednet_causality_and_top_down_order():
    torch.manual_seed(0)
    model = build_model("prednet", 3, "smoke").eval()
    clip = make_input(model, 1, 32, seed=1)
    other = clip.clone()
    other[:, 2] = make_input(model, 1, 32, seed=2)[:, 2]
    with torch.no_grad():
        p1, p2 = model.predict(clip).predictions, model.predict(other).predictions
        # the prediction of frame t uses frames < t only
        assert torch.equal(p1[:, :3], p2[:, :3]) and not torch.equal(p1[:, 3], p2[:, 3])
        # R_0(0) is computed after R_{L-1}(0) (top-down in the same step): the top layer's
        # bias reaches the very first prediction
        model.cells[-1].conv.bias.add_(1.0)
        p3 = model.predict(clip).predictions
    assert not torch.allclose(p1[:, 0], p3[:, 0])


def test_convlstm_has_no_peepholes_and_is_an_lstm():
    for cin, hid, k in ((5, 3, 3), (2, 4, 1), (6, 2, 5)):
        cell = ConvLSTMCell(cin, hid, k)
        assert sum(p.numel() for p in cell.parameters()) == 4 * (cin + hid) * hid * k * k + 4 * hid
    model = build_model("prednet", 3, "tiny")
    a, r, k = model.config.stack, model.config.r_stack, model.config.r_kernel
    for l, cell in enumerate(model.cells):
        cin = 2 * a[l] + (r[l + 1] if l < 3 else 0)
        assert sum(p.numel() for p in cell.parameters()) == 4 * (cin + r[l]) * r[l] * k * k + 4 * r[l]
    # whole model: cells + Â convs + A convs + head, nothing else
    ka, kh = model.config.a_kernel, model.config.ahat_kernel
    total = sum(4 * (2 * a[l] + (r[l + 1] if l < 3 else 0) + r[l]) * r[l] * k * k + 4 * r[l] for l in range(4))
    total += sum(r[l] * a[l] * kh * kh + a[l] for l in range(4))
    total += sum(2 * a[l] * a[l + 1] * ka * ka + a[l + 1] for l in range(3))
    total += r[3] * 3 + 3
    total += 2 * r[3]                      # embedding_norm: BatchNorm1d weight and bias
    assert sum(p.numel() for p in model.parameters()) == total
    # with 1x1 kernels on a 1x1 map the ConvLSTM is torch.nn.LSTMCell (gate order i, f, g, o)
    torch.manual_seed(0)
    cell, ref = ConvLSTMCell(5, 3, 1), nn.LSTMCell(5, 3)
    w = cell.conv.weight.detach()[:, :, 0, 0]  # (4h, in + h), our order i, f, o, g
    order = torch.cat([torch.arange(0, 6), torch.arange(9, 12), torch.arange(6, 9)])  # -> i, f, g, o
    with torch.no_grad():
        ref.weight_ih.copy_(w[order, :5])
        ref.weight_hh.copy_(w[order, 5:])
        ref.bias_ih.copy_(cell.conv.bias[order])
        ref.bias_hh.zero_()
    x, h, c = torch.randn(4, 5), torch.randn(4, 3), torch.randn(4, 3)
    h1, c1 = cell(x[:, :, None, None], (h[:, :, None, None], c[:, :, None, None]))
    h2, c2 = ref(x, (h, c))
    torch.testing.assert_close(h1[:, :, 0, 0], h2)
    torch.testing.assert_close(c1[:, :, 0, 0], c2)


def test_prednet_loss_reaches_all_but_the_head():
    torch.manual_seed(0)
    model = build_model("prednet", 3, "smoke")
    prednet_loss(model.predict(make_input(model, 2, 32)).errors).backward()
    for name, p in model.named_parameters():
        if name.startswith(("classifier", "embedding_norm")):
            assert p.grad is None
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_prednet_embedding_norm_sits_between_pooled_r_and_classifier():
    torch.manual_seed(0)
    model = build_model("prednet", 3, "smoke").eval()
    assert isinstance(model.embedding_norm, nn.BatchNorm1d)
    with torch.no_grad():
        model.embedding_norm.running_mean.fill_(0.5)
        model.embedding_norm.running_var.fill_(4.0)
        clip = make_input(model, 2, 32)
        out = model.forward_features(clip)
        top_r = model.predict(clip).r_states[-1]
    emb = top_r.mean((2, 3))
    torch.testing.assert_close(out.embedding, emb)
    expect = model.classifier((emb - 0.5) / torch.sqrt(torch.tensor(4.0 + model.embedding_norm.eps)))
    torch.testing.assert_close(out.logits, expect)
    plain = PredNet(dataclasses.replace(model.config, embedding_norm="none"), 3, model.input_size)
    assert not any(k.startswith("embedding_norm") for k in plain.state_dict())
    with pytest.raises(ValueError, match="embedding_norm"):
        PredNet(dataclasses.replace(model.config, embedding_norm="layer"), 3, model.input_size)


def test_prednet_learns_a_constant_sequence():
    torch.manual_seed(0)
    model: PredNet = build_model("prednet", 3, "smoke")
    frame = normalise(torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3)))
    clip = frame.expand(2, 4, 3, 32, 32).contiguous()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(40):
        out = model.predict(clip)
        loss = prednet_loss(out.errors)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # it uses the past: predictions of frames 1.. beat the first, made from no frame at all
    with torch.no_grad():
        errors = model.predict(clip).errors[:, :, 0]
    assert errors[:, 1:].mean() < errors[:, 0].mean()
    assert math.isfinite(losses[-1])


def test_batch_norm_switch_follows_torchvision_bn_layout_and_keeps_conv4():
    """batch_norm=True (the tiny preset's choice) lays VGG out as torchvision's vgg19_bn
    (conv, bn, relu; convs at the indices below, written from torchvision's definition) and
    conv4 is still the ReLU output of block 4's last conv."""
    vgg = build_model("vgg19_teacher", 10, "smoke", batch_norm=True)
    convs = [i for i, m in enumerate(vgg.features) if isinstance(m, torch.nn.Conv2d)]
    assert convs == [0, 3, 7, 10, 14, 17, 20, 23, 27, 30, 33, 36, 40, 43, 46, 49]
    bns = [i for i, m in enumerate(vgg.features) if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns == [i + 1 for i in convs]
    seen = {}
    vgg.features[38].register_forward_hook(lambda m, i, o: seen.setdefault("relu", o))  # block 4's last ReLU
    vgg.eval()
    x = torch.randn(2, 3, 32, 32)
    out = vgg.forward_features(x)
    assert torch.equal(out.conv4, seen["relu"])
    assert tuple(out.conv4.shape[1:]) == vgg.conv4_shape()

    alex = build_model("alexnet", 10, "smoke", batch_norm=True).eval()
    assert [i for i, m in enumerate(alex.features) if isinstance(m, torch.nn.BatchNorm2d)] == [1, 5, 9, 12, 15]
    seen.clear()
    alex.features[13].register_forward_hook(lambda m, i, o: seen.setdefault("relu", o))  # conv4's ReLU
    out = alex.forward_features(x)
    assert torch.equal(out.conv4, seen["relu"]) and tuple(out.conv4.shape[1:]) == alex.conv4_shape()
