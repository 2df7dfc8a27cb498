"""Shared fixtures: a smoke-preset synthetic dataset and a feature store built from randomly
initialised teachers (what the pipeline does before real teachers exist), made once per session."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "2")
# pretraining's frame cache (docs/DATASET.md, Decoding) goes to a temporary folder, not ./cache
if "HARNESS_FRAME_CACHE" not in os.environ:
    os.environ["HARNESS_FRAME_CACHE"] = tempfile.mkdtemp(prefix="harness-frames-")
    atexit.register(shutil.rmtree, os.environ["HARNESS_FRAME_CACHE"], True)
TEACHERS = (("sort", "vgg19_teacher"), ("motion", "vgg19_teacher"), ("track", "vgg19_teacher"),
            ("predict", "prednet"))


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory):
    from harness.config import resolve
    from harness.data.synth import SYNTH_PRESETS, generate

    root = tmp_path_factory.mktemp("synth") / "synth-smoke"
    generate(root, resolve(SYNTH_PRESETS, "smoke"), seed=0, progress=False)
    return root


def random_teacher_checkpoints(folder, num_classes, preset="smoke"):
    from harness.models import build_model

    ckpts = {}
    for i, (name, arch) in enumerate(TEACHERS):
        torch.manual_seed(100 + i)
        model = build_model(arch, num_classes, preset)
        path = folder / f"{name}.pt"
        torch.save({"arch": arch, "model": model.state_dict(), "num_classes": num_classes, "preset": preset}, path)
        ckpts[name] = path
    return ckpts


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory, smoke_data):
    from harness.cache.teachers import cache_teachers
    from harness.data.index import open_index

    folder = tmp_path_factory.mktemp("store")
    n = open_index("synth", smoke_data, 1, "train").num_classes
    ckpts = random_teacher_checkpoints(folder, n)
    st = cache_teachers("smoke", ckpts, smoke_data, store=folder / "smoke.zarr", progress=False)
    assert st.is_complete()
    return folder / "smoke.zarr"
