"""Speed of one training step (forward + backward) of each distillation method on a tiny-preset
batch built from random tensors of the cached shapes. Compare rows of one run side by side:
the machine is shared and absolute times are noisy.

    pytest benchmarks/test_bench_methods.py --benchmark-only
"""

import pytest
import torch

from harness.distill.methods import METHODS, MethodContext, MethodSettings, TeacherBatch, build_method
from harness.models import build_model

B, C, K = 64, 10, 4


def _setup(name: str):
    torch.manual_seed(0)
    student = build_model("alexnet", C, "tiny")
    c4, h, w = student.conv4_shape()
    ctx = MethodContext(num_classes=C, teacher_names=[f"t{i}" for i in range(K)], teacher_channels=[32] * K,
                        student_channels=c4, ground_cost=1 - torch.eye(C),
                        student_stage_channels=tuple(student.stage_channels))
    method = build_method(name, ctx, MethodSettings(gr_d=128))
    tb = TeacherBatch(torch.randn(B, K, C), [torch.randn(B, 32, h, w).relu() for _ in range(K)],
                      torch.randint(0, C, (B,)))
    x = torch.randn(B, 3, 64, 64)
    params = [p for p in (list(student.parameters()) + list(method.parameters())) if p.requires_grad]
    return student, method, tb, x, params


@pytest.mark.parametrize("name", [m for m in METHODS if m != "fusion"])
def test_train_step(benchmark, name):
    student, method, tb, x, params = _setup(name)

    def step():
        _, terms = method(student, x, tb)
        loss = sum(terms.values())
        for p in params:
            p.grad = None
        loss.backward()

    benchmark.group = "distill train step, tiny shapes, B=64"
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("grad", ["potentials", "unroll"])
def test_sinkhorn_gradient_modes(benchmark, grad):
    from harness.distill.graphs import LogitsGraph

    torch.manual_seed(0)
    graph = LogitsGraph(K, [2.0] * K, em="sinkhorn", em_eps=0.05, em_iters=50, em_eps_start=0.05, em_tol=0.0,
                        em_grad=grad)
    t = torch.randn(128, K, 101)
    s = torch.randn(128, 101, requires_grad=True)
    cost = torch.rand(101, 101)
    cost = (cost + cost.T) / 2
    cost.fill_diagonal_(0)

    def step():
        s.grad = None
        graph(t, s, cost)["logit"].backward()

    benchmark.group = "G_l EM (Sinkhorn) forward+backward, B=128, C=101"
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
