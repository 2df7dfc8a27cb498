"""Odd-one-out (Fernando et al. 2017): which of N subsequences has its frames out of order?"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from harness.pretext.base import (SiameseHead, PretextError, PretextTask, classification_step, embed, pick_videos,
                                  register, targets, to_input)


def misordered_permutation(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of ``range(n)`` that is neither the identity nor its reverse.

    The reverse is excluded too: a sequence played backwards is often a plausible forward
    motion (OPN's reason for giving a permutation and its reverse one class).
    """
    if n < 3:
        raise PretextError(f"oddoneout: a subsequence needs at least 3 frames to be misordered, got {n}")
    ident = np.arange(n)
    while True:
        p = rng.permutation(n)
        if not (np.array_equal(p, ident) or np.array_equal(p, ident[::-1])):
            return p


@register
class OddOneOutTask(PretextTask):
    """N subsequences of ``length`` frames from one video (the question); N-1 keep their temporal
    order, one (the odd one, at position ``target``) is shuffled. Each subsequence is encoded by
    the sum of the embeddings of its frame differences (:meth:`encode`); the N encodings are
    concatenated (fusion) and classified N-way.
    """

    name = "oddoneout"
    arch = "alexnet"
    reference = "Fernando et al., CVPR 2017 (O3N)"
    chance_note = "1/N: the odd subsequence's position is uniform over the N slots"

    train_presets = {"tiny": {"epochs": 5, "iters_per_epoch": 20}}

    @dataclasses.dataclass(frozen=True)
    class Knobs:
        n_questions: int = 6   # N subsequences per question
        length: int = 4        # frames per subsequence
        max_stride: int = 2    # frames between consecutive frames of a subsequence: 1..max_stride
        hidden: int = 128       # hidden units of the MLP on the concatenated subsequence embeddings
        dropout: float = 0.0    # dropout p in that MLP head

    def check_knobs(self) -> None:
        k = self.knobs
        if k.n_questions < 2 or k.length < 3 or k.max_stride < 1:
            raise PretextError(f"oddoneout: need n_questions >= 2, length >= 3, max_stride >= 1; got {k}")
        self.num_outputs = k.n_questions

    def min_frames(self) -> int:
        return (self.knobs.length - 1) * self.knobs.max_stride + 1

    def sample(self, videos, batch_size, rng):
        k = self.knobs
        picks = pick_videos(videos, batch_size, self.min_frames(), rng)
        frames, target, index = [], [], []
        for vi in picks:
            v = videos[vi]
            odd = int(rng.integers(0, k.n_questions))
            question, q_index = [], []
            for q in range(k.n_questions):
                stride = int(rng.integers(1, k.max_stride + 1))
                span = (k.length - 1) * stride + 1
                start = int(rng.integers(0, len(v) - span + 1))
                idx = start + stride * np.arange(k.length)
                if q == odd:
                    idx = idx[misordered_permutation(k.length, rng)]
                question.append(v[idx])
                q_index.append(idx)
            frames.append(np.stack(question))
            target.append(odd)
            index.append(np.stack(q_index))
        return {"frames": np.stack(frames), "target": np.array(target, np.int64), "frame_index": np.stack(index)}

    def build_head(self, embedding_dim):
        return SiameseHead(embedding_dim, self.knobs.n_questions, self.knobs.hidden, self.num_outputs,
                           self.knobs.dropout)

    def encode(self, backbone, frames: np.ndarray, device) -> torch.Tensor:
        """Sum-of-differences encoding, ``(B, N, D)`` from frames ``(B, N, L, H, W, 3)``.

        The L-1 differences of consecutive (normalised) frames each go through the shared
        backbone and their embeddings are summed. Taking differences before the network keeps
        the encoding sensitive to the order (a sum of differences of embeddings would telescope
        to last minus first).
        """
        b, n, length = frames.shape[:3]
        x = to_input(frames, self.input_size, device).view(b * n, length, 3, self.input_size, self.input_size)
        diffs = (x[:, 1:] - x[:, :-1]).flatten(0, 1)
        emb = embed(backbone, diffs).view(b, n, length - 1, -1)
        return emb.sum(dim=2)

    def step(self, backbone, head, batch, device="cpu"):
        enc = self.encode(backbone, batch["frames"], device)
        return classification_step(head(enc), targets(batch, device))
