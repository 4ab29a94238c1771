"""`python -m e2e <stage> <name>`: argument parsing only; the stage modules do the work."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from e2e.errors import E2EError
from e2e.tasks import TASKS

STAGES = {  # stage -> module; imported only when run, so `e2e --help` stays fast
    "download": "e2e.stages.download",
    "convert": "e2e.stages.convert",
    "split": "e2e.stages.split",
    "train": "e2e.stages.train",
    "evaluate": "e2e.stages.evaluate",
    "export": "e2e.stages.export",
}
NAMES = tuple(TASKS)  # the tasks, which name their datasets too
STAGE_HELP = {
    "download": "get a dataset's raw files: the CERNBox originals, checked by sha256, or synthetic files in the "
    "same formats (params.yaml data.source)",
    "convert": "raw files -> data/converted/<dataset>: the non-zero pixels only, labels, observables",
    "split": "stratified, seeded train/validation/test indices -> data/splits/<task>",
    "train": "fit the task's model, keep the best epoch on validation -> models/<task>/model.pt",
    "evaluate": "test metrics with their 95 percent intervals, ROC or mass-response plots, per-event predictions -> "
    "metrics/<task>/",
    "export": "the trained model as ONNX, checked against PyTorch -> models/<task>/model.onnx",
}
DESCRIPTION = """\
Train and evaluate neural networks on CMS "end-to-end" detector images, reproducibly:
electron_photon (32x32 ECAL crops: electron or photon?), quark_gluon (125x125 jet images: quark or
gluon jet?) and jet_mass (125x125 jet images, 8 channels: the jet's mass). Every step is a stage of the
DVC pipeline in dvc.yaml, driven by params.yaml; the stage commands below are what `dvc repro` runs."""
EPILOG = """\
stages, per dataset or task: download -> convert -> split -> train -> evaluate, and export

usual commands:
  dvc repro                                 run the stages whose inputs changed (synthetic data by default)
  dvc exp run -S train.quark_gluon.lr=3e-4  an experiment with one param changed
  e2e compare --task quark_gluon            the experiments on one screen, best validation first
  e2e summary                               where the results are, and the headline test metrics
  e2e predict jet_mass --input new.parquet  apply a trained model to new files in the real formats
  e2e tune quark_gluon --trials 20          search hyperparameters, every trial a DVC experiment
  make full                                 the real CERNBox data at full size (needs a GPU)

`python -m e2e` and `e2e` are the same command."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="e2e", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    p.add_argument("--root", default=".", help="repository root that holds data/, models/, metrics/")
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    for stage in STAGES:
        s = sub.add_parser(stage, help=STAGE_HELP[stage], description=STAGE_HELP[stage])
        s.add_argument("name", choices=NAMES)
    pre = sub.add_parser(
        "preset",
        help="the `-S key=value` arguments of a preset under presets/ for `dvc exp "
        "run` (make full: presets/full.yaml); refused without a GPU unless --device cpu",
    )
    pre.add_argument("preset", help="a file name under presets/ without .yaml, e.g. full")
    pre.add_argument(
        "--device",
        help="run the experiment on this device (runtime.device: auto, cpu, cuda, "
        "cuda:<index>); cpu allows a preset on a machine without a GPU",
    )
    sub.add_parser("summary", help="where the results are, and the headline test metrics of each task")
    add_predict(sub)
    add_tune(sub)
    cmp = sub.add_parser(
        "compare",
        help="the experiments on one screen: changed params, each changed task's test "
        "metric with its 95 %% interval and validation metric, best validation first",
    )
    cmp.add_argument(
        "--task", choices=NAMES, help="only this task's params and metrics, sorted by its validation metric"
    )
    cmp.add_argument("dvc_args", nargs=argparse.REMAINDER, help="passed to `dvc exp show`, e.g. -A or --rev main")
    return p


def add_predict(sub) -> None:
    pr = sub.add_parser(
        "predict", help="apply a trained model to new files in the real formats -> a table of predictions"
    )
    pr.add_argument("name", choices=NAMES, help="task whose model to apply")
    pr.add_argument("--input", nargs="+", required=True, type=Path, metavar="FILE", help="raw .hdf5/.parquet files")
    pr.add_argument("--output", default=Path("predictions.parquet"), type=Path, help="(default: predictions.parquet)")
    pr.add_argument(
        "--model",
        type=Path,
        help="model.pt (torch; preprocessing.json is read from its directory) "
        "or model.onnx (onnx; its metadata holds the preprocessing); default: <root>/models/<task>/",
    )
    pr.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        help="torch (the checkpoint; default where torch is installed) or onnx (the exported graph, with onnxruntime)",
    )
    pr.add_argument("--batch-rows", type=int, default=256, help="images per batch: bounds the memory used")
    pr.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1")


def add_tune(sub) -> None:
    tu = sub.add_parser(
        "tune",
        help="an Optuna study over params.yaml tune.<task>.space, every trial a DVC experiment (`dvc exp run --temp`)",
    )
    tu.add_argument("name", choices=NAMES, help="task to tune, on its validation metric")
    tu.add_argument(
        "--trials",
        type=int,
        default=20,
        help="run until the study has this many finished trials "
        "(complete or failed); a rerun adds only the difference (default: 20)",
    )
    tu.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="trials at a time: one GPU each where there are enough, else a share of the CPU cores each (default: 1)",
    )
    tu.add_argument("--study", help="study name, and prefix of the experiments' names (default: the task)")
    tu.add_argument(
        "--storage",
        help="Optuna storage shared by the workers: a journal file path, or a URL such "
        "as sqlite:///tune.db or postgresql://... (default: tune/<task>.journal)",
    )
    tu.add_argument(
        "--push",
        nargs="?",
        const="origin",
        metavar="REMOTE",
        help="`dvc exp push REMOTE` each trial's experiment (default REMOTE: origin), for workers in other clones",
    )
    tu.add_argument(
        "-S",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="a fixed override of every trial, as `dvc exp run -S` takes it (e.g. "
        "train.quark_gluon.epochs=2; repeatable), recorded in the study",
    )


def _preset(args: argparse.Namespace) -> None:
    from e2e.presets import set_args
    from e2e.tune.trial import visible_gpus

    path = Path(args.root) / "presets" / f"{args.preset}.yaml"
    print(" ".join(set_args(path, device=args.device, gpus=visible_gpus())))


def _summary(args: argparse.Namespace) -> None:
    from e2e.config import Paths
    from e2e.reports.summary import main as summary

    summary(Paths(Path(args.root)))


def _predict(args: argparse.Namespace) -> None:
    from e2e.inference.predict import main as predict

    predict(
        args.name,
        args.input,
        args.output,
        args.model,
        root=Path(args.root),
        batch_rows=args.batch_rows,
        device_name=args.device,
        backend=args.backend,
    )


def _compare(args: argparse.Namespace) -> None:
    from e2e.reports.compare import main as compare

    compare(args.task, args.dvc_args)


def _tune(args: argparse.Namespace) -> None:
    from e2e.tune.search import main as tune

    tune(
        args.name,
        params_path=Path(args.params),
        root=Path(args.root),
        trials=args.trials,
        jobs=args.jobs,
        study_name=args.study,
        storage=args.storage,
        push_to=args.push,
        overrides=args.overrides,
    )


TOOLS = {"preset": _preset, "summary": _summary, "predict": _predict, "compare": _compare, "tune": _tune}


def run(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command in TOOLS:  # the commands around the pipeline: no params.yaml stage settings needed
        TOOLS[args.command](args)
        return
    from e2e.config import Paths, load_params

    params = load_params(Path(args.params))
    if args.command == "train" and params.runtime.nproc > 1 and "WORLD_SIZE" not in os.environ:
        relaunch_under_torchrun(params.runtime.nproc, argv if argv is not None else sys.argv[1:])
    module = importlib.import_module(STAGES[args.command])
    module.main(params, args.name, Paths(Path(args.root)))


def relaunch_under_torchrun(nproc: int, argv: list[str]) -> None:
    """Replace this process by torchrun running the same command on `nproc` local processes."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "e2e",
        *argv,
    ]
    print("relaunching:", " ".join(cmd), flush=True)
    os.execv(sys.executable, cmd)


def main(argv: list[str] | None = None) -> None:
    try:
        run(argv)
    except E2EError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
