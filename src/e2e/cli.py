"""`python -m e2e <stage> <name>`: argument parsing only; the stage modules do the work."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from .errors import E2EError

STAGES = {  # stage -> module; imported only when run, so `e2e --help` stays fast
    "download": "e2e.download",
    "convert": "e2e.convert",
    "split": "e2e.split",
    "train": "e2e.train",
    "evaluate": "e2e.evaluate",
    "export": "e2e.export",
}
NAMES = ("electron_photon", "quark_gluon", "jet_mass")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="e2e", description=__doc__)
    p.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    p.add_argument("--root", default=".", help="repository root that holds data/, models/, metrics/")
    sub = p.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        s = sub.add_parser(stage, help=f"run the {stage} stage for one dataset/task")
        s.add_argument("name", choices=NAMES)
    pre = sub.add_parser("preset", help="print `-S key=value` arguments of a preset for `dvc exp run`")
    pre.add_argument("preset", help="a file name under presets/ without .yaml, e.g. full")
    sub.add_parser("summary", help="print where results are and the headline test metrics")
    add_predict(sub)
    add_tune(sub)
    cmp = sub.add_parser("compare", help="the experiments on one screen: changed params, each changed task's test "
                         "metric with its 95 %% interval and validation metric, best validation first")
    cmp.add_argument("--task", choices=NAMES, help="only this task's params and metrics, sorted by its validation metric")
    cmp.add_argument("dvc_args", nargs=argparse.REMAINDER, help="passed to `dvc exp show`, e.g. -A or --rev main")
    return p


def add_predict(sub) -> None:
    pr = sub.add_parser("predict", help="apply a trained model to new raw files in the real formats")
    pr.add_argument("name", choices=NAMES, help="task whose model to apply")
    pr.add_argument("--input", nargs="+", required=True, type=Path, metavar="FILE", help="raw .hdf5/.parquet files")
    pr.add_argument("--output", default=Path("predictions.parquet"), type=Path, help="(default: predictions.parquet)")
    pr.add_argument("--model", type=Path, help="model.pt (torch; preprocessing.json is read from its directory) "
                    "or model.onnx (onnx; its metadata holds the preprocessing); default: <root>/models/<task>/")
    pr.add_argument("--backend", choices=("torch", "onnx"), help="torch (the checkpoint; default where torch is "
                    "installed) or onnx (the exported graph, with onnxruntime)")
    pr.add_argument("--batch-rows", type=int, default=256, help="images per batch: bounds the memory used")
    pr.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1")


def add_tune(sub) -> None:
    tu = sub.add_parser("tune", help="an Optuna study over params.yaml tune.<task>.space, every trial a DVC "
                        "experiment (`dvc exp run --temp`)")
    tu.add_argument("name", choices=NAMES, help="task to tune, on its validation metric")
    tu.add_argument("--trials", type=int, default=20, help="run until the study has this many finished trials "
                    "(complete or failed); a rerun adds only the difference (default: 20)")
    tu.add_argument("--jobs", type=int, default=1, help="trials at a time: one GPU each where there are enough, "
                    "else a share of the CPU cores each (default: 1)")
    tu.add_argument("--study", help="study name, and prefix of the experiments' names (default: the task)")
    tu.add_argument("--storage", help="Optuna storage shared by the workers: a journal file path, or a URL such "
                    "as sqlite:///tune.db or postgresql://... (default: tune/<task>.journal)")
    tu.add_argument("--push", nargs="?", const="origin", metavar="REMOTE", help="`dvc exp push REMOTE` each "
                    "trial's experiment (default REMOTE: origin), for workers in other clones")


def run(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from .config import Paths, load_params

    if args.command == "preset":
        from .presets import set_args

        print(" ".join(set_args(Path(args.root) / "presets" / f"{args.preset}.yaml")))
        return
    if args.command == "summary":
        from .summary import main as summary

        summary(Paths(Path(args.root)))
        return
    if args.command == "predict":
        from .predict import main as predict

        predict(args.name, args.input, args.output, args.model, Path(args.root), args.batch_rows, args.device,
                args.backend)
        return
    if args.command == "compare":
        from .compare import main as compare

        compare(args.task, args.dvc_args)
        return
    if args.command == "tune":
        from .tune import main as tune

        tune(args.name, Path(args.params), Path(args.root), args.trials, args.jobs, args.study, args.storage,
             args.push)
        return
    params = load_params(Path(args.params))
    if args.command == "train" and params.runtime.nproc > 1 and "WORLD_SIZE" not in os.environ:
        relaunch_under_torchrun(params.runtime.nproc, argv if argv is not None else sys.argv[1:])
    module = importlib.import_module(STAGES[args.command])
    module.main(params, args.name, Paths(Path(args.root)))


def relaunch_under_torchrun(nproc: int, argv: list[str]) -> None:
    """Replace this process by torchrun running the same command on `nproc` local processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "e2e", *argv]
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
