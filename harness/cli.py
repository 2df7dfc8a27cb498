"""The ``harness`` command line. Each command parses options and hands off to one module;
no command prints a number it did not compute."""

from __future__ import annotations

import sys

import click

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


def table_options(command):
    """--preset, --seed, --store, --data-root, --seeds: what every table command takes."""
    for option in reversed((preset_option, seed_option, store_option, data_root_option, seeds_option)):
        command = option(command)
    return command


set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override one config field (repeatable), e.g. --set epochs=3.")


def command_line() -> str:
    """The running command as a user would retype it: its path and every option that has a
    value (defaults included, so the line stays true when a default changes). Tables print it
    as "Made by"."""
    import shlex

    ctx = click.get_current_context()
    words = ["harness", *ctx.command_path.split()[1:]]   # the console script, however it was invoked
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
    """Datasets: the embedded synthetic benchmark (the real ones are read from --data-root; docs/DATASET.md)."""


@data.command("synth")
@click.option("--root", type=click.Path(file_okay=False), required=True, help="Folder to write the dataset into.")
@preset_option
@seed_option
@click.option("--force", is_flag=True, help="Replace a non-empty --root.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def data_synth(root, preset, seed, force, quiet):
    """Generate the embedded synthetic video benchmark in the UCF101 layout."""
    import json
    from pathlib import Path

    from harness.config import resolve
    from harness.data.synth import SYNTH_PRESETS, generate

    cfg = resolve(SYNTH_PRESETS, preset)
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
              help="Folder with unlabeled.txt (default for smoke/tiny: data/synth-<preset>, generated if missing).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (default: runs/pretrain/<preset>/<task>-seed<S>-<config fingerprint>).")
@set_option
def pretrain(task, preset, seed, data_root, out_dir, overrides):
    """Self-supervised pretraining of one teacher (no class labels are read)."""
    import json
    from pathlib import Path

    from harness.config import parse_overrides
    from harness.pretext.base import get_task
    from harness.pretext.train import pretrain as run_pretrain

    get_task(task)  # an unknown name fails here, before any data is touched
    ckpt = run_pretrain(task, preset, seed, data_root, out_dir, parse_overrides(overrides))
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
def finetune(arch, init, checkpoint, preset, seed, dataset, data_root, split, quiet, overrides):
    """Fine-tune a pretrained (or random, or supervised) backbone for classification."""
    from harness.config import parse_overrides
    from harness.finetune import finetune as run_finetune

    run = run_finetune(arch, init, preset, seed, dataset, data_root, split if split == "all" else int(split),
                       checkpoint, parse_overrides(overrides), progress=not quiet)
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
@click.option("--quiet", is_flag=True, help="No progress bars.")
def teachers(preset, seed, data_root, quiet):
    """Pretrain and fine-tune the four teachers (sort, motion, track, predict) and report their cost.

    Reuses finished runs. Prints and writes tables/generated/<preset>/teachers.{md,json}: each
    teacher's held-out pretext metric, fine-tuned accuracy and the seconds its runs recorded,
    this command's wall time, and one VGG fine-tuning step timed on this machine beside them.
    """
    from harness import pipeline
    from harness.tables.teachers import render_teachers

    made = pipeline.teacher_runs(preset, seed, data_root, progress=not quiet)
    click.echo(render_teachers(made, preset, seed, command=command_line()))


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
@click.option("--info", "info_path", type=click.Path(), default=None, help="Only print a store's manifest and layout.")
@click.option("--verify", "verify_path", type=click.Path(), default=None,
              help="Only check a store: read every chunk against the checksums recorded when it was written.")
@set_option
def cache_teachers(preset, seed, fmt, store, views, teachers, data_root, info_path, verify_path, overrides):
    """Run the frozen teachers once and cache conv4 maps, logits, frames and views.

    Resumable: a killed run continues with its missing chunks. Several processes
    (torchrun --nproc_per_node N harness cache-teachers ...) write disjoint chunks of one store.
    """
    from harness.config import parse_overrides

    if info_path:
        from harness.cache.store import FeatureStore

        with FeatureStore.open(info_path) as st:
            click.echo(st.info())
        return
    if verify_path:
        from harness.cache.store import FeatureStore

        with FeatureStore.open(verify_path) as st:
            problems = st.verify()
            if problems:
                for line in problems:
                    click.echo(f"error: {line}", err=True)
                sys.exit(2)
            click.echo(f"{st.path}: sound ({st.n_chunks} chunks read and matched their checksums)")
        return
    from harness import pipeline
    from harness.cache.teachers import cache_teachers as run_cache
    from harness.cache.teachers import cache_config, store_target

    # bad settings and a name of the other format fail before any teacher is trained
    cache_config(preset, parse_overrides(overrides), views)
    store_target(preset, store, fmt)

    root = pipeline.ensure_data(preset, data_root)
    if teachers:
        ckpts = {}
        for spec in teachers:
            if "=" not in spec:
                raise ConfigError(f"--teacher expects NAME=CHECKPOINT, got {spec!r}")
            name, path = spec.split("=", 1)
            ckpts[name] = path
    else:
        ckpts = pipeline.teacher_checkpoints(preset, seed, root)
    st = run_cache(preset, ckpts, root, store=store, fmt=fmt, views=views, overrides=parse_overrides(overrides))
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
@set_option
def distill(method, preset, seed, store, data_root, teacher_seed, overrides):
    """Train the student from the feature store with one distillation method.

    Writes runs/distill/<preset>/<method>-<config fingerprint>/ (run.json, metrics.jsonl,
    final.json, student.pt); resumes from state.pt; a finished run is reused.
    """
    from harness import pipeline
    from harness.config import parse_overrides

    run = pipeline.run_method(method, preset, seed, parse_overrides(overrides), store=store, data_root=data_root,
                              teacher_seed=teacher_seed)
    final = run.final()
    click.echo(f"{method}: video-level {final['metric']} {100 * final['value']:.2f}% ({run.path})")


@main.command()
@click.option("--method", required=True, type=RegistryChoice("harness.distill.methods", "METHODS"),
              help="Table 2 row to run, e.g. mmgd+gr.")
@table_options
def ablation(method, preset, seed, store, data_root, seeds):
    """Run (or reuse) one Table 2 row and print it beside the paper's numbers."""
    from harness import pipeline
    from harness.tables.tables import render_table2, table2_dir

    runs = pipeline.table2_runs([method], preset, pipeline.seed_list(preset, seed, seeds), store=store,
                                data_root=data_root)
    click.echo(render_table2(runs, command_line(), table2_dir(preset, [method])))


@main.command()
@table_options
def table1(preset, seed, store, data_root, seeds):
    """Regenerate Table 1 (single self-supervised tasks vs G_l+G_r) beside the paper's numbers.

    The main job. Runs every missing step (data, 7 pretext tasks, fine-tuning, the teacher
    store, G_l+G_r distillation), reuses finished runs, and writes
    tables/generated/<preset>/table1.{md,csv,json}.
    """
    from harness import pipeline
    from harness.tables.tables import GENERATED, render_table1

    runs = pipeline.table1_runs(preset, pipeline.seed_list(preset, seed, seeds), data_root, store=store)
    click.echo(render_table1(runs, command_line(), GENERATED / preset))


@main.command()
@table_options
def table2(preset, seed, store, data_root, seeds):
    """Regenerate Table 2 (every distillation baseline) beside the paper's numbers.

    Runs what is missing (teachers, store, each method), reuses finished runs, and writes
    tables/generated/<preset>/table2.{md,csv,json}.
    """
    from harness import pipeline
    from harness.distill.methods import METHODS
    from harness.tables.tables import render_table2, table2_dir

    methods = [m for m, spec in METHODS.items() if spec.table2]
    runs = pipeline.table2_runs(methods, preset, pipeline.seed_list(preset, seed, seeds), store=store,
                                data_root=data_root)
    click.echo(render_table2(runs, command_line(), table2_dir(preset, methods)))


@main.command()
@table_options
def claims(preset, seed, store, data_root, seeds):
    """Test each claim of the paper on our runs: a paired difference, its 95% interval and a verdict.

    Runs or reuses every run behind Tables 1 and 2 (the same runs those commands use) and writes
    tables/generated/<preset>/claims.{md,json}: holds / fails / inconclusive per claim.
    """
    from harness import pipeline
    from harness.distill.methods import METHODS
    from harness.tables.claims import TABLE1_CLAIMS, TABLE2_CLAIMS, cells_from_runs, judge, render_claims
    from harness.tables.render import paper_numbers
    from harness.tables.tables import GENERATED, dataset_label

    seed_ids = pipeline.seed_list(preset, seed, seeds)
    t2 = pipeline.table2_runs([m for m, spec in METHODS.items() if spec.table2], preset, seed_ids, store=store,
                              data_root=data_root)
    t1 = pipeline.table1_runs(preset, seed_ids, data_root, store=store)
    c2, c1 = cells_from_runs(t2), cells_from_runs(t1)
    results = [judge(c, c2) for c in TABLE2_CLAIMS] + [judge(c, c1) for c in TABLE1_CLAIMS]
    label = dataset_label([r for rs in (*t1.values(), *t2.values()) for r in rs])
    click.echo(render_claims(results, {1: paper_numbers(1), 2: paper_numbers(2)}, label, command_line(),
                             GENERATED / preset))


@main.command()
@table_options
def figures(preset, seed, store, data_root, seeds):
    """Draw the figures from the runs behind Table 2 (run or reused), as PNG and PDF.

    Writes tables/generated/<preset>/figures/: fig4a_curves (test accuracy per epoch, G_l vs
    G_l+G_r and MMGD vs MMGD+G_r), fig3_conv1 (first-layer filters of the teachers and of the
    MMGD and G_l+G_r students) and graph_weights (learned G_l adjacency, G_r vertex weights).
    """
    from harness import pipeline
    from harness.cache.store import FeatureStore
    from harness.checkpoints import load_checkpoint, load_verified
    from harness.distill.methods import METHODS
    from harness.errors import HarnessError
    from harness.tables.figures import fig3_conv1, fig4a_curves, graph_weights
    from harness.tables.tables import GENERATED

    seed_ids = pipeline.seed_list(preset, seed, seeds)
    runs = pipeline.table2_runs(["gl", "gl+gr", "mmgd", "mmgd+gr"], preset, seed_ids, store=store, data_root=data_root)
    out = GENERATED / preset / "figures"
    written = fig4a_curves(runs, {m: METHODS[m].label for m in runs}, out)
    written += graph_weights(runs, out)
    path = pipeline.student_store(preset, seed_ids[0], store=store, data_root=data_root)
    with FeatureStore.open(path) as st:
        teachers = st.manifest["teachers"]
    models = {f"teacher {name}": (load_verified(t["checkpoint"], HarnessError, "fine-tuned checkpoint",
                                                "state_dict")["state_dict"], t["checkpoint"])
              for name, t in teachers.items()}
    for method in ("mmgd", "gl+gr"):
        run = runs[method][0]
        models[f"student {METHODS[method].label}"] = (load_checkpoint(run.path / "student.pt", HarnessError,
                                                                      "student weights"), str(run.path))
    written += fig3_conv1(models, out)
    click.echo("\n".join(str(p) for p in written))


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
