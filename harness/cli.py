"""The ``harness`` command line. Each command parses options and hands off to one module;
no command prints a number it did not compute."""

from __future__ import annotations

import functools
import sys

import click

from harness import report
from harness.config import DEFAULT_PRESET, PRESETS, ConfigError

class RegistryChoice(click.Choice):
    """A choice whose names are a registry's keys, read when an option is parsed or its help
    shown (so `harness --help` imports no torch), never a list copied into the CLI."""

    def __init__(self, module: str, attr: str):
        self._source = (module, attr)
        super().__init__(())

    @property
    def choices(self):
        import importlib

        module, attr = self._source
        return tuple(getattr(importlib.import_module(module), attr))

    @choices.setter
    def choices(self, _):  # click.Choice.__init__ assigns; the registry is the source
        pass


preset_option = click.option(
    "--preset", type=click.Choice(PRESETS), default=DEFAULT_PRESET, show_default=True,
    help="smoke: seconds, for tests; tiny: embedded synthetic benchmark on a laptop CPU; "
         "paper: UCF101/HMDB51/CCV shapes, GPU.")
seed_option = click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed.")
seeds_option = click.option(
    "--seeds", type=click.IntRange(min=1), default=None,
    help="Seeds per trained cell, --seed, --seed+1, ... (default: smoke 1, tiny 3, paper 1). A seed varies "
         "fine-tuning and distillation; the teachers, their pretraining and the store use --seed.")
store_option = click.option("--store", type=click.Path(), default=None,
                            help="Feature store (default: cache/<preset>.zarr, built first if missing).")
data_root_option = click.option("--data-root", type=click.Path(file_okay=False), default=None,
                                help="Dataset root (default for smoke/tiny: data/synth-<preset>, generated if missing).")


def _request(preset, seed, store, dataset, data_root, split, seeds, strict_seeds, volumes=False,
             pretrained_weights=None):
    """What a table command asks the pipeline for (``harness.report.Request``)."""
    from harness import pipeline

    return report.Request(preset, pipeline.seed_list(preset, seed, seeds), store=store, data_root=data_root,
                          command=command_line(), strict=strict_seeds, volumes=volumes,
                          dataset=dataset or pipeline.default_dataset(preset),
                          split="all" if split == "all" else int(split or 1), pretrained_weights=pretrained_weights)


dataset_option = click.option(
    "--dataset", type=RegistryChoice("harness.data.index", "DATASETS"), default=None,
    help="Dataset under --data-root in its official layout (default: synth; the paper preset: ucf101; "
         "docs/DATASET.md).")
split_option = click.option("--split", type=click.IntRange(1, 3), default=None,
                            help="Official train/test split (default 1; CCV has one).")
table_split_option = click.option(
    "--split", type=click.Choice(["1", "2", "3", "all"]), default=None,
    help="Official train/test split (default 1; CCV has one); 'all' trains every cell on each split and reports "
         "the mean, with the paired intervals over the three test sets together.")
pretrained_weights_option = click.option(
    "--pretrained-weights", type=click.Path(dir_okay=False), default=None,
    help="ImageNet AlexNet weights (a torchvision-format state_dict) for Table 1's AlexNet_pre on a real dataset; "
         "without them the row is marked missing.")


volumes_option = click.option(
    "--volumes", is_flag=True,
    help="Also Fig. 4b: the G_l+G_r student from teachers pretrained on 25%, 50% and 100% of the unlabeled videos "
         "(trains two more sets of teachers and stores the first time).")


strict_seeds_option = click.option(
    "--strict-seeds", is_flag=True,
    help="Each seed also re-trains its own pretraining, teachers and store (cache/<preset>-teachers-seed<N>.zarr) "
         "instead of sharing those of --seed.")


skip_bad_option = click.option(
    "--skip-bad", is_flag=True,
    help="Leave out unreadable or truncated videos (counted in the run's record, a warning each) instead of "
         "stopping at the first with an error (the setting skip_bad; docs/DATASET.md).")


def with_skip_bad(command):
    """``--skip-bad`` on a command that runs several stages: every stage that reads videos
    (pretraining, fine-tuning, caching) leaves out the bad ones (``config.command_settings``)."""
    @functools.wraps(command)
    def run(*args, skip_bad=False, **kwargs):
        from harness.config import command_settings

        with command_settings(**({"skip_bad": True} if skip_bad else {})):
            return command(*args, **kwargs)

    return skip_bad_option(run)


def table_options(command, seeds=seeds_option):
    """--preset, --seed, --store, --dataset, --data-root, --split, --seeds, --strict-seeds,
    --skip-bad: what every table command takes (``seeds``: its own --seeds, where it differs)."""
    command = with_skip_bad(command)
    for option in reversed((preset_option, seed_option, store_option, dataset_option, data_root_option,
                            table_split_option, seeds, strict_seeds_option)):
        command = option(command)
    return command


set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override one config field (repeatable), e.g. --set epochs=3.")


def parsed_overrides(overrides, skip_bad: bool = False) -> dict:
    """``--set`` pairs as a dict, with ``skip_bad`` set when ``--skip-bad`` was given."""
    from harness.config import parse_overrides

    return {**parse_overrides(overrides), **({"skip_bad": "true"} if skip_bad else {})}


def command_line() -> str:
    """The running command as a user would retype it: its path and every option that has a
    value (defaults included, so the line stays true when a default changes). Tables print it
    as "Made by"."""
    import shlex

    from harness import determinism

    ctx = click.get_current_context()
    words = ["harness", *ctx.command_path.split()[1:]]   # the console script, however it was invoked
    if determinism.requested():   # on by the flag or the variable: the line says so either way
        words.insert(1, "--deterministic")
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if not isinstance(param, click.Option) or value is None or value is False or value == ():
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            words.append(flag)
        else:
            for v in value if param.multiple else (value,):
                words += [flag, str(v)]
    return shlex.join(words)


class HarnessGroup(click.Group):
    """Turns the harness's own user-facing errors into one line on stderr and exit code 2: a
    full disk or a folder that cannot be written too, naming the path. Ctrl-C is one line
    naming where the same command resumes from, exit code 130 (the shell's for SIGINT)."""

    def invoke(self, ctx):
        from harness.errors import HarnessError, write_error

        try:
            return super().invoke(ctx)
        except (ConfigError, HarnessError, FileNotFoundError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:
            err = write_error(exc)
            if err is None:
                raise
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            where = getattr(exc, "path", None)
            click.echo("interrupted" + (f"; run the same command to resume from {where}" if where else ""), err=True)
            sys.exit(130)


@click.group(cls=HarnessGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="harness")
@click.option("--deterministic", is_flag=True,
              help="CPU results independent of thread count and SIMD level, and of the CPU model on emulated "
                   "CPUs (1 thread, portable kernels, oneDNN off, IEEE square roots; slower); the same as "
                   "HARNESS_DETERMINISTIC=1. Its runs get their own folders.")
def main(deterministic):
    """Multi-teacher knowledge distillation for video classification.

    Data flows one way: videos -> teachers (pretrain, finetune) -> cache-teachers
    -> distill / ablation -> table1, table2. Every command records its config, code
    version and input fingerprints beside its results.
    """
    from harness import determinism
    from harness.allocator import keep_freed_memory

    # here, before any command imports torch (docs/REPRODUCIBILITY.md)
    if deterministic or determinism.requested():
        determinism.enable()
    keep_freed_memory()


# ---- data ------------------------------------------------------------------------------

@main.group()
def data():
    """Datasets: the embedded synthetic benchmark (the real ones are read from --data-root; docs/DATASET.md)."""


@data.command("synth")
@click.option("--root", type=click.Path(file_okay=False), required=True, help="Folder to write the dataset into.")
@preset_option
@seed_option
@click.option("--force", is_flag=True, help="Replace a non-empty --root.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@set_option
def data_synth(root, preset, seed, force, quiet, overrides):
    """Generate the embedded synthetic video benchmark in the UCF101 layout.

    --set changes the generator's config (`harness config show --stage synth` lists it), e.g.
    --set test_clips_per_group=8 for ten test clips per class and group (docs/DATASET.md, Power);
    other commands read such a dataset with --data-root."""
    import json
    from pathlib import Path

    from harness.config import parse_overrides, resolve
    from harness.data.synth import SYNTH_PRESETS, generate

    cfg = resolve(SYNTH_PRESETS, preset, parse_overrides(overrides))
    out = generate(root, cfg, seed=seed, progress=not quiet, overwrite=force)
    meta = json.loads((Path(out) / "synth.json").read_text())
    counts = meta["counts"]
    click.echo(f"wrote {out}: {len(meta['classes'])} classes, {counts['labeled']} labeled, "
               f"{counts['unlabeled']} unlabeled, {counts['disjoint']} disjoint videos "
               f"in {meta['generation_seconds']:.1f}s (fingerprint {meta['fingerprint'][:12]})")


# ---- teachers --------------------------------------------------------------------------

@main.command()
@click.option("--task", required=True, type=RegistryChoice("harness.pretext", "PRETEXT_TASKS"),
              help="Self-supervised pretext task (harness.pretext.PRETEXT_TASKS): the teachers are sort, "
                   "motion, track, predict; the other tasks are Table 1 rows (docs/PRETEXT.md).")
@preset_option
@seed_option
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset root (default for smoke/tiny: data/synth-<preset>, generated if missing).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (default: runs/pretrain/<preset>/<task>-seed<S>-<config fingerprint>).")
@set_option
@skip_bad_option
@dataset_option
@split_option
@click.option("--unlabeled", type=click.Path(dir_okay=False), default=None,
              help="A list of videos to pretrain on, one path per line (default: the root's unlabeled.txt, else the "
                   "training split's videos without their labels).")
def pretrain(task, preset, seed, data_root, out_dir, overrides, skip_bad, dataset, split, unlabeled):
    """Self-supervised pretraining of one teacher (no class labels are read)."""
    import json
    from pathlib import Path

    from harness.pretext.base import get_task
    from harness.pretext.train import pretrain as run_pretrain

    get_task(task)  # an unknown name fails here, before any data is touched
    from harness import pipeline

    ckpt = run_pretrain(task, preset, seed, data_root, out_dir, parsed_overrides(overrides, skip_bad),
                        dataset=dataset or pipeline.default_dataset(preset), split=split or 1, unlabeled=unlabeled)
    metrics = json.loads((Path(ckpt).parent / "final.json").read_text())
    click.echo(f"{task} ({metrics['arch']}, {preset}, seed {seed}): held-out {metrics['metric_name']} "
               f"{metrics['metric']:.4f} (at init {metrics['metric_at_init']:.4f}; chance {metrics['chance']:.4f}: "
               f"{metrics['chance_note']})")
    click.echo(f"checkpoint: {ckpt}")


@main.command()
@click.option("--arch", required=True, type=RegistryChoice("harness.models", "MODEL_REGISTRY"),
              help="Backbone to fine-tune.")
@click.option("--init", "init", required=True, type=RegistryChoice("harness.finetune", "INITS"),
              help="random: own init (AlexNet_ran); pretext: a 'harness pretrain' checkpoint.pt; supervised: "
                   "first train on the synthetic disjoint classes (AlexNet_pre on smoke/tiny); file: a local "
                   ".pth (e.g. ImageNet weights).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="The pretext checkpoint.pt (--init pretext) or weights file (--init file).")
@preset_option
@seed_option
@click.option("--dataset", type=RegistryChoice("harness.data.index", "DATASETS"), default="synth",
              show_default=True)
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset folder (default for synth on smoke/tiny: data/synth-<preset>, generated if missing).")
@click.option("--split", type=click.Choice(["1", "2", "3", "all"]), default="1", show_default=True,
              help="Official split; 'all' runs the three and reports their mean.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@set_option
@skip_bad_option
def finetune(arch, init, checkpoint, preset, seed, dataset, data_root, split, quiet, overrides, skip_bad):
    """Fine-tune a pretrained (or random, or supervised) backbone for classification."""
    from harness.finetune import finetune as run_finetune

    run = run_finetune(arch, init, preset, seed, dataset, data_root, split if split == "all" else int(split),
                       checkpoint, parsed_overrides(overrides, skip_bad), progress=not quiet)
    final = run.final()
    per_split = ", ".join(f"split {k}: {v:.4f}" for k, v in (final.get("per_split") or {}).items())
    click.echo(f"{arch} ({init}, {dataset}, {preset}, seed {seed}): video-level {final['metric']} "
               f"{final['value']:.4f} (chance {final['chance']:.4f}; {per_split})")
    click.echo(f"run: {run.path}")


@main.command()
@preset_option
@seed_option
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset root (default for smoke/tiny: data/synth-<preset>, generated if missing).")
@dataset_option
@split_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
@with_skip_bad
def teachers(preset, seed, data_root, dataset, split, quiet):
    """Pretrain and fine-tune the four teachers (sort, motion, track, predict) and report their cost.

    Reuses finished runs. Prints and writes tables/generated/<preset>/teachers.{md,json}: each
    teacher's held-out pretext metric, fine-tuned accuracy and the seconds its runs recorded,
    this command's wall time, and one VGG fine-tuning step timed on this machine beside them.
    """
    from harness import report

    from harness import pipeline

    click.echo(report.teachers(report.Request(preset, [seed], data_root=data_root, command=command_line(),
                                              progress=not quiet, dataset=dataset or pipeline.default_dataset(preset),
                                              split=split or 1)))


@main.group()
def config():
    """Inspect configuration."""


@config.command("show")
@preset_option
@click.option("--stage", type=RegistryChoice("harness.settings_doc", "STAGES"), default="distill", show_default=True,
              help="Which stage's settings: distillation, fine-tuning (with --arch), pretraining (with --task), "
                   "the teacher cache, the synthetic set or the backbones' shapes.")
@click.option("--method", default=None, help="distill: only the method settings this method reads (its fingerprint).")
@click.option("--arch", default=None, help="finetune: the backbone (alexnet, vgg19_teacher, prednet).")
@click.option("--task", default=None, help="pretrain: the pretext task (e.g. sort).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable rows instead of a table.")
@set_option
def config_show(preset, stage, method, arch, task, as_json, overrides):
    """The resolved config of one stage: every key with its value, the preset's and the class
    default, and a one-line doc. Accepts the same --set overrides as that stage's command."""
    from harness.config import parse_overrides
    from harness.settings_doc import describe, render

    click.echo(render(describe(preset, method, parse_overrides(overrides), stage, arch, task), as_json))


@main.command("cache-teachers")
@preset_option
@seed_option
@click.option("--format", "fmt", type=RegistryChoice("harness.cache.store", "FORMATS"), default="zarr",
              show_default=True,
              help="Store backend: Zarr v3 directory or one HDF5 file.")
@click.option("--store", type=click.Path(), default=None, help="Store path (default: cache/<preset>.zarr or .h5).")
@click.option("--views", type=click.IntRange(min=1), default=None,
              help="Augmentation views per item (default: the preset's).")
@click.option("--teacher", "teachers", multiple=True, metavar="NAME=CHECKPOINT",
              help="A fine-tuned teacher checkpoint (repeatable). Default: the four pretext teachers "
                   "(sort, motion, track, predict), pretrained and fine-tuned first if missing.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset root (default for smoke/tiny: data/synth-<preset>, generated if missing).")
@dataset_option
@split_option
@click.option("--info", "info_path", type=click.Path(), default=None, help="Only print a store's manifest and layout.")
@click.option("--verify", "verify_path", type=click.Path(), default=None,
              help="Only check a store: read every chunk against the checksums recorded when it was written.")
@set_option
@skip_bad_option
def cache_teachers(preset, seed, fmt, store, views, teachers, data_root, dataset, split, info_path, verify_path,
                   overrides, skip_bad):
    """Run the frozen teachers once and cache conv4 maps, logits, frames and views.

    Resumable: a killed run continues with its missing chunks. Several processes
    (torchrun --nproc_per_node N harness cache-teachers ...) write disjoint chunks of one store.
    """

    if info_path:
        from harness.cache.store import FeatureStore

        with FeatureStore.open(info_path) as st:
            click.echo(st.info())
        return
    if verify_path:
        from harness.cache.store import FeatureStore

        from harness.cache.teachers import teacher_store_problem

        with FeatureStore.open(verify_path) as st:
            problems = [p for p in (teacher_store_problem(st),) if p] + st.verify()
            if problems:
                for line in problems:
                    click.echo(f"error: {line}", err=True)
                sys.exit(2)
            click.echo(f"{st.path}: sound ({st.n_chunks} chunks read and matched their checksums)")
        return
    from harness import pipeline
    from harness.cache.teachers import cache_teachers as run_cache
    from harness.cache.teachers import cache_config, parse_teacher_options, store_target

    # bad settings, --teacher options and a name of the other format fail before any teacher is trained
    overrides = parsed_overrides(overrides, skip_bad)
    cfg = cache_config(preset, overrides, views)
    dataset, split = dataset or cfg.dataset, split or cfg.split
    overrides = {**overrides, "dataset": dataset, "split": split}
    store = store or pipeline.data_store_path(preset, dataset, split, fmt)
    store_target(preset, store, fmt)
    ckpts = parse_teacher_options(teachers) if teachers else None

    root = pipeline.ensure_data(preset, data_root, dataset)
    if ckpts is None:
        ckpts = pipeline.teacher_checkpoints(preset, seed, root, dataset=dataset, split=split)
    st = run_cache(preset, ckpts, root, store=store, fmt=fmt, views=views, overrides=overrides)
    state = "complete" if st.is_complete() else "this process's chunks written; other ranks still writing"
    click.echo(f"{st.path}: {st.n_items} items, {state}")


# ---- students --------------------------------------------------------------------------

@main.command()
@click.option("--method", required=True, type=RegistryChoice("harness.distill.methods", "METHODS"),
              help="Distillation method (harness.distill.methods.METHODS): a Table 2 row, 'staged-kd' (an "
                   "extra row: our interpretation of staged KD from its abstract) or 'student' (labels only).")
@preset_option
@seed_option
@click.option("--store", type=click.Path(), default=None,
              help="Feature store (default: cache/<preset>.zarr, built first if missing).")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Dataset root used when the store has to be built.")
@click.option("--teacher-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the teachers whose store is built when --store is not a complete store.")
@click.option("--label-noise", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True,
              help="Share of training videos whose label is replaced by another class at random (seeded by --seed; "
                   "test labels untouched).")
@dataset_option
@split_option
@set_option
def distill(method, preset, seed, store, data_root, teacher_seed, label_noise, dataset, split, overrides):
    """Train the student from the feature store with one distillation method.

    Writes runs/distill/<preset>/<method>-<config fingerprint>/ (run.json, metrics.jsonl,
    final.json, student.pt); resumes from state.pt; a finished run is reused.
    """
    from harness import pipeline
    from harness.config import parse_overrides

    run = pipeline.run_method(method, preset, seed, parse_overrides(overrides), store=store, data_root=data_root,
                              teacher_seed=teacher_seed, label_noise=label_noise,
                              dataset=dataset or pipeline.default_dataset(preset), split=split or 1)
    final = run.final()
    click.echo(f"{method}: video-level {final['metric']} {100 * final['value']:.2f}% ({run.path})")


@main.command()
@click.option("--method", required=True, type=RegistryChoice("harness.distill.methods", "METHODS"),
              help="Table 2 row to run, e.g. mmgd+gr.")
@table_options
def ablation(method, **options):
    """Run (or reuse) one Table 2 row and print it beside the paper's numbers."""
    click.echo(report.table2(_request(**options), [method]))


@main.command()
@table_options
@pretrained_weights_option
def table1(**options):
    """Regenerate Table 1 (single self-supervised tasks vs G_l+G_r) beside the paper's numbers.

    The main job. Runs every missing step (data, 7 pretext tasks, fine-tuning, the teacher
    store, G_l+G_r distillation), reuses finished runs, and writes
    tables/generated/<preset>/table1.{md,csv,json}.
    """
    click.echo(report.table1(_request(**options)))


@main.command()
@table_options
def table2(**options):
    """Regenerate Table 2 (every distillation baseline) beside the paper's numbers.

    Runs what is missing (teachers, store, each method), reuses finished runs, and writes
    tables/generated/<preset>/table2.{md,csv,json}.
    """
    click.echo(report.table2(_request(**options)))


@main.command()
@table_options
@click.option("--power", is_flag=True,
              help="Also project the paired standard error to more seeds and test videos (about a minute on tiny).")
@volumes_option
@pretrained_weights_option
def claims(power, **options):
    """Test each claim of the paper on our runs: a paired difference, its 95% interval and a verdict.

    Runs or reuses every run behind Tables 1 and 2 (the same runs those commands use) and writes
    tables/generated/<preset>/claims.{md,json}: holds / fails / inconclusive per claim.
    """
    click.echo(report.claims(_request(**options), power=power))


def power_options(command):
    """table_options with ``--seeds`` defaulting to 10: power compares three seeds with more."""
    return table_options(command, click.option(
        "--seeds", type=click.IntRange(min=1), default=10, show_default=True,
        help="Seeds per method, --seed, --seed+1, ...; compared with the lowest 3, so at least 4. A seed varies "
             "distillation; the teachers, their pretraining and the store use --seed."))


@main.command()
@power_options
@click.option("--methods", default=",".join(report.POWER_METHODS), show_default=True, metavar="M,M,...",
              help="Table 2 methods to train, comma-separated; every pair a Table 2 claim compares is measured.")
@click.option("--videos", default=None, metavar="N,N,...",
              help="Also project each pair's all-seed error to these numbers of test videos, e.g. 1400.")
@click.option("--boot", type=click.IntRange(min=100), default=None,
              help="Bootstrap replicates per standard error (default: the claims table's).")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Where power.{md,csv,json,tex} go (default tables/generated/<preset>/).")
def power(methods, videos, boot, out_dir, seeds, **options):
    """How well the benchmark separates methods, measured: --seeds N of each method.

    For every pair of the methods that a Table 2 claim compares: the paired standard error of the
    difference on the lowest 3 seeds (what the default tables hold), the error the 3-seed
    bootstrap projects to N seeds, and the difference, 95% interval, verdict and error measured on
    all N. Writes power.{md,csv,json,tex}. With a larger test set (docs/DATASET.md, Power), name
    its --data-root and its own --store.
    """
    try:
        counts = tuple(int(v) for v in (videos or "").split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{videos!r}: not a comma-separated list of integers", param_hint="--videos")
    if any(v < 1 for v in counts):
        raise click.BadParameter(f"{videos!r}: video counts must be positive", param_hint="--videos")
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    click.echo(report.power(_request(seeds=seeds, **options), method_list, 3, counts, out_dir, boot))


@main.command("label-noise")
@table_options
@click.option("--rates", default="0,0.2,0.4", show_default=True, metavar="P,P,...",
              help="Training-label noise rates, comma-separated, each in [0, 1).")
def label_noise(rates, **options):
    """The weak-supervision table: staged-kd vs kd vs gl+gr at each training-label noise rate.

    Runs or reuses each (method, rate, seed) from one store and writes
    tables/generated/<preset>/label_noise.{md,csv,json,tex}: mean ± sd over seeds and, per
    rate, staged-kd's paired difference against each other method with its verdict.
    """
    try:
        rate_list = [float(r) for r in rates.split(",") if r.strip()]
    except ValueError:
        raise click.BadParameter(f"{rates!r}: not a comma-separated list of numbers", param_hint="--rates")
    click.echo(report.label_noise(_request(**options), rate_list))


@main.command()
@table_options
@volumes_option
def figures(**options):
    """Draw the figures from the runs behind Table 2 (run or reused), as PNG and PDF.

    Writes tables/generated/<preset>/figures/: fig4a_curves (test accuracy per epoch, G_l vs
    G_l+G_r and MMGD vs MMGD+G_r), fig3_conv1 (first-layer filters of the teachers and of the
    MMGD and G_l+G_r students) and graph_weights (learned G_l adjacency, G_r vertex weights).
    """
    click.echo(report.figures(_request(**options)))


@main.command("report")
@table_options
@click.option("--skip", multiple=True, type=RegistryChoice("harness.report", "ARTIFACTS"),
              help="An artifact to leave out (repeatable), e.g. --skip label-noise.")
@pretrained_weights_option
def report_cmd(skip, **options):
    """The whole reproduction: teachers, Tables 1 and 2, Fig. 4b's runs, the claims, the figures,
    the weak-supervision table and the speed table, each run or reused, then
    tables/generated/<preset>/REPORT.md (what was made, the claims' verdicts, where the time went)."""
    click.echo(report.make_report(_request(**options, volumes=True), tuple(skip)))


@main.command()
@preset_option
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="auto", show_default=True,
              help="Where the models run (named in the table).")
def speed(preset, device):
    """The speed table: parameters, FLOPs per frame and inference frames/s of each teacher, of the
    four together and of the student (tiny: at the tiny and the paper shapes).

    Writes tables/generated/<preset>/speed.{md,csv,json}.
    """
    from harness.speed import speed_table
    from harness.tables.speed import render_speed
    from harness.tables.tables import GENERATED

    click.echo(render_speed(speed_table(preset, device), command_line(), GENERATED / preset))


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def bench(pytest_args):
    """Run the pytest-benchmark speed reports (shipped with the package; benchmarks/ in a checkout).

    Works from any folder; results go to .benchmarks/ under the current one. Extra arguments
    go to pytest, e.g. `harness bench -k reader`.
    """
    from pathlib import Path

    import pytest

    import harness

    suite = Path(harness.__file__).resolve().parent / "bench"
    # no cache folder inside the installed package; the suite's conftest is its own
    sys.exit(pytest.main([str(suite), "--benchmark-only", "-p", "no:cacheprovider", "--rootdir", str(suite),
                          *pytest_args]))


if __name__ == "__main__":
    main()
