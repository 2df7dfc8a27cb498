"""The ``harness`` command line. Each command parses options and hands off to one module;
no command prints a number it did not compute."""

from __future__ import annotations

import sys

import click

from harness.config import DEFAULT_PRESET, PRESETS, ConfigError

preset_option = click.option(
    "--preset", type=click.Choice(PRESETS), default=DEFAULT_PRESET, show_default=True,
    help="smoke: seconds, for tests; tiny: embedded synthetic benchmark on a laptop CPU; "
         "paper: UCF101/HMDB51/CCV shapes, GPU.")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override one config field (repeatable), e.g. --set epochs=3.")


def not_built(command: str, issue: int) -> None:
    """Commands whose subsystem has not landed say so and fail; they never fake output."""
    click.echo(f"harness {command}: not built yet (tracked in issue {issue}); nothing was run.", err=True)
    sys.exit(2)


class HarnessGroup(click.Group):
    """Turns the harness's own user-facing errors into one line on stderr and exit code 2."""

    def invoke(self, ctx):
        from harness.errors import HarnessError

        try:
            return super().invoke(ctx)
        except (ConfigError, HarnessError, FileNotFoundError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=HarnessGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="harness")
def main():
    """Multi-teacher knowledge distillation for video classification.

    Data flows one way: videos -> teachers (pretrain, finetune) -> cache-teachers
    -> distill / ablation -> table1, table2. Every command records its config, code
    version and input fingerprints beside its results.
    """


# ---- data ------------------------------------------------------------------------------

@main.group()
def data():
    """Datasets: the embedded synthetic benchmark and the real ones' indexes."""


@data.command("synth")
@click.option("--root", type=click.Path(file_okay=False), required=True, help="Folder to write the dataset into.")
@preset_option
@seed_option
def data_synth(root, preset, seed):
    """Generate the embedded synthetic video benchmark in the UCF101 layout."""
    not_built("data synth", 2)


# ---- teachers --------------------------------------------------------------------------

@main.command()
@click.option("--task", required=True,
              type=click.Choice(["sort", "motion", "track", "predict", "shuffle", "oddoneout", "pose"]),
              help="Self-supervised pretext task.")
@preset_option
@seed_option
@set_option
def pretrain(task, preset, seed, overrides):
    """Self-supervised pretraining of one teacher (no class labels are read)."""
    not_built("pretrain", 3)


@main.command()
@preset_option
@seed_option
@set_option
def finetune(preset, seed, overrides):
    """Fine-tune a pretrained (or random, or supervised) backbone for classification."""
    not_built("finetune", 3)


@main.command("cache-teachers")
@preset_option
@click.option("--format", "fmt", type=click.Choice(["zarr", "hdf5"]), default="zarr", show_default=True)
@click.option("--store", type=click.Path(), default=None, help="Store path (default: cache/<preset>.<format>).")
@click.option("--views", type=int, default=None, help="Augmentation views per clip (default: preset's).")
@click.option("--info", "info_path", type=click.Path(), default=None, help="Print a store's manifest and layout.")
def cache_teachers(preset, fmt, store, views, info_path):
    """Run the frozen teachers once and cache conv4 maps, logits, frames and views."""
    not_built("cache-teachers", 4)


# ---- students --------------------------------------------------------------------------

@main.command()
@click.option("--method", required=True, help="Distillation method (a row of Table 2).")
@preset_option
@seed_option
@set_option
def distill(method, preset, seed, overrides):
    """Train the student from the feature store with one distillation method."""
    not_built("distill", 5)


@main.command()
@click.option("--method", required=True, help="Table 2 row to run, e.g. mmgd+gr.")
@preset_option
@seed_option
def ablation(method, preset, seed):
    """Run (or reuse) one Table 2 row and print it beside the paper's numbers."""
    not_built("ablation", 5)


@main.command()
@preset_option
@seed_option
def table1(preset, seed):
    """Regenerate Table 1 (single self-supervised tasks vs G_l+G_r) beside the paper's numbers."""
    not_built("table1", 3)


@main.command()
@preset_option
@seed_option
def table2(preset, seed):
    """Regenerate Table 2 (every distillation baseline) beside the paper's numbers."""
    not_built("table2", 5)


@main.command()
@click.argument("pytest_args", nargs=-1)
def bench(pytest_args):
    """Run the pytest-benchmark speed reports (benchmarks/)."""
    import pytest

    sys.exit(pytest.main(["benchmarks", "--benchmark-only", *pytest_args]))


if __name__ == "__main__":
    main()
