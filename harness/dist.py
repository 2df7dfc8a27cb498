"""The process's place in a torchrun job, read from the environment in one place."""

from __future__ import annotations

import os

from harness.errors import HarnessError


class DistEnvError(HarnessError):
    """A torchrun variable that is not an integer, or a rank outside the world."""


def dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's RANK / WORLD_SIZE / LOCAL_RANK, else
    ``(0, 1, 0)``; a bad value is one line naming the variable."""

    def read(name: str, default: int) -> int:
        value = os.environ.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise DistEnvError(f"environment variable {name}={value!r} is not an integer") from None

    rank, world, local = read("RANK", 0), read("WORLD_SIZE", 1), read("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise DistEnvError(f"rank {rank} / world size {world} (RANK / WORLD_SIZE): need 0 <= rank < world_size")
    return rank, world, local
