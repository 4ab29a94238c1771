"""The DVC contract: dvc.lock matches the committed code and params, each stage's deps are exactly the modules
it imports, no module imports from a layer above its own, hardware knobs invalidate nothing, and the data stages
give the lock's md5s on any x86-64 CPU.

`dvc status` is run on a copy of dvc.yaml, dvc.lock, params.yaml and src/ (no outputs, no git): the
outputs then read "not in cache" when their md5 matches the lock and "modified" when it does not, and a
code or param change shows as a changed dep.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.pipeline_repo import set_param, status

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
NAMES = ("electron_photon", "quark_gluon", "jet_mass")
# `python -m e2e <stage>` goes through these: argument parsing and dispatch only, nothing that reaches a
# stage's outputs; as deps they would rerun all 18 stages for every new subcommand
DISPATCH = {"e2e", "e2e.__main__", "e2e.cli"}
# numpy >= 2.4 names the groups X86_V3/X86_V4, older releases the single features: disable both, so numpy
# dispatches its SSE kernels (as on a machine without AVX2 or AVX-512)
NO_AVX = "X86_V3 X86_V4 AVX2 FMA3 AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"
HARDWARE_KNOBS = {
    "runtime.device": "cpu",
    "runtime.threads": 1,
    "runtime.resident_max_gb": 1.0,
    "runtime.nproc": 2,
    "runtime.convert_workers": 3,
}
NUMERIC_KNOBS = {
    "runtime.amp": ("train",),
    "runtime.channels_last": ("train", "evaluate"),
    "runtime.tf32": ("train", "evaluate"),
    "runtime.compile": ("train",),
}


def module_path(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported(name: str) -> set[str]:
    """The e2e modules that module `name` imports anywhere in its body (lazy imports in functions too)."""
    path = module_path(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from . import metrics` names modules
    modules = {m for m in found if m.split(".")[0] == "e2e" and module_path(m)}
    # importing a.b.c runs the __init__ of a.b too
    return modules | {".".join(m.split(".")[:i]) for m in modules for i in range(1, m.count(".") + 1)}


def closure(root: str) -> set[str]:
    """`root` and every e2e module it imports, directly or not; the packages above `root` run too."""
    seen, todo = set(), [root] + [".".join(root.split(".")[:i]) for i in range(1, root.count(".") + 1)]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imported(name) - seen)
    return seen - DISPATCH


def stages() -> dict[str, dict]:
    """dvc.yaml's stages, the foreach expanded: {"train@quark_gluon": {"cmd": ..., "deps": [...], ...}}."""
    out, pipeline = {}, yaml.safe_load((ROOT / "dvc.yaml").read_text())
    names = next(v["names"] for v in pipeline["vars"] if "names" in v)
    for stage, spec in pipeline["stages"].items():
        assert spec["foreach"] == "${names}", stage  # every stage over the one list
        for item in names:
            text = json.dumps(spec["do"]).replace("${item}", item)
            out[f"{stage}@{item}"] = json.loads(text)
    return out


def modules_under(dep: str) -> set[str]:
    """The e2e modules a `src/...` dep names: one file, or every module of a folder."""
    path = ROOT / dep
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return {".".join(f.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__") for f in files}


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


@pytest.mark.parametrize("stage", list(stages()))
def test_deps_are_the_modules_the_stage_imports(stage):
    """Every imported module is a dep, and a folder is a dep only when the stage imports all of it: a change
    to the optimiser (e2e.training) reruns train, never evaluate."""
    spec = stages()[stage]
    name = re.fullmatch(r"python -m e2e (\w+) \w+", spec["cmd"]).group(1)
    modules = closure(f"e2e.stages.{name}")
    missing = sorted(
        str(module_path(m).relative_to(ROOT)) for m in modules if not covered(module_path(m), spec["deps"])
    )
    assert not missing, f"{stage}: dvc.yaml deps miss imported modules {missing}"
    code_deps = [d for d in spec["deps"] if d.startswith("src/")]
    unused = {d: sorted(modules_under(d) - modules) for d in code_deps if modules_under(d) - modules}
    assert not unused, f"{stage}: dvc.yaml deps name modules the stage never imports {unused}"


# The layers of docs/design.md, bottom first: a module imports from its own package or from a lower layer only.
LAYERS = {
    "e2e": 0,  # the package's __init__: a docstring and the version
    "e2e.errors": 0,
    "e2e.config": 1,
    "e2e.models": 1,
    "e2e.tasks": 2,
    "e2e.store": 2,
    "e2e.evaluation.metrics": 2,  # pure numpy, named functions: training validates with them too
    "e2e.inference.inputs": 2,  # pure numpy, a model's named inputs: the batches check jet-level inputs with it
    "e2e.sources": 3,
    "e2e.runtime": 3,
    "e2e.training": 4,
    "e2e.evaluation": 4,
    "e2e.conversion": 4,
    "e2e.inference": 5,
    "e2e.stages": 6,
    "e2e.tune": 7,
    "e2e.reports": 7,
    "e2e.presets": 7,
    "e2e.cli": 8,
    "e2e.__main__": 9,  # `python -m e2e`: runs the cli
}


def package(module: str) -> str:
    """The entry of LAYERS that `module` belongs to: the longest that names it or a package above it."""
    return max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len, default=module)


def upward(importer: str, target: str) -> bool:
    """True when `importer` reaches into another package at its own layer or above."""
    a, b = package(importer), package(target)
    return a != b and LAYERS[b] >= LAYERS[a]


def all_modules() -> list[str]:
    return sorted(modules_under("src/e2e"))


def named(module: str) -> set[str]:
    """The modules `module` imports, without the packages it only passes through (`from e2e.evaluation
    import metrics` runs e2e/evaluation/__init__.py, a docstring, but uses evaluation.metrics)."""
    found = imported(module)
    return {n for n in found if not any(o.startswith(n + ".") for o in found)}


def test_every_module_has_a_layer():
    assert not [m for m in all_modules() if package(m) not in LAYERS]


def test_no_module_imports_from_a_layer_above_its_own():
    found = [f"{m} imports {n}" for m in all_modules() for n in sorted(named(m)) if upward(m, n)]
    assert not found, found


def test_the_layer_check_flags_an_upward_import():
    assert upward("e2e.store.sparse", "e2e.training.loop")  # storage reaching into training
    assert upward("e2e.training.loop", "e2e.evaluation.plots")  # two packages of one layer
    assert not upward("e2e.stages.train", "e2e.training.loop")
    assert not upward("e2e.training.loop", "e2e.training.ddp")  # within a package
    assert not upward("e2e.training.fit", "e2e.evaluation.metrics")  # metrics sit below training


def test_the_closure_follows_lazy_and_relative_imports():
    evaluate = closure("e2e.stages.evaluate")
    assert {"e2e.evaluation.metrics", "e2e.models", "e2e.models.resnet", "e2e.config.schema"} <= evaluate
    assert "e2e.cli" not in evaluate and "e2e.stages.download" not in evaluate
    assert not {m for m in evaluate if m.startswith("e2e.training")}
    assert "e2e.sources.synthetic.parquet_io" in closure("e2e.stages.download")


def changed_deps(status: dict) -> dict[str, dict]:
    """{stage: {dep: change}} for code and params deps; the absent data outputs of other stages are ignored."""
    out = {}
    for stage, entries in status.items():
        for entry in entries:
            deps = {k: v for k, v in entry.get("changed deps", {}).items() if not k.startswith(("data/", "models/"))}
            if deps:
                out[stage] = deps
    return out


@pytest.fixture
def project(tmp_path) -> Path:
    """dvc.yaml, dvc.lock, params.yaml and src/ of this checkout in a DVC project without git or outputs."""
    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(SRC, tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def edit_params(repo: Path, **dotted) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for key, value in dotted.items():
        set_param(params, key, value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_the_committed_lock_matches_the_code_and_params(project):
    """A clone that pulls the outputs must find every stage up to date (`dvc status` clean)."""
    assert changed_deps(status(project)) == {}, "dvc.lock is older than the code: run `dvc repro`, commit it"


def stale_after(project: Path, **dotted) -> dict[str, dict]:
    """The deps that changing `dotted` params makes stale, beyond what was stale before (so these tests
    stay independent of whether the lock is up to date)."""
    before = changed_deps(status(project))
    edit_params(project, **dotted)
    after = changed_deps(status(project))
    return {
        stage: {k: v for k, v in deps.items() if before.get(stage, {}).get(k) != v}
        for stage, deps in after.items()
        if deps != before.get(stage)
    }


def test_hardware_knobs_invalidate_no_stage(project):
    assert stale_after(project, **HARDWARE_KNOBS) == {}


@pytest.mark.parametrize(
    "param, value, stale",
    [
        ("evaluate.batch_size", 64, {f"evaluate@{n}" for n in NAMES}),  # re-evaluates, never retrains
        ("train.quark_gluon.lr", 0.0003, {"train@quark_gluon"}),  # evaluate@quark_gluon follows its new model
        ("convert.jet_mass.clip", 20.0, {"convert@jet_mass"}),
        ("export.tolerance", 0.001, {f"export@{n}" for n in NAMES}),  # re-exports, never retrains
        ("tune.quark_gluon.seed", 3, set()),  # read by `e2e tune` only, no stage
    ],
)
def test_a_param_makes_stale_only_the_stages_that_read_it(project, param, value, stale):
    assert set(stale_after(project, **{param: value})) == stale


@pytest.mark.parametrize("knob", list(NUMERIC_KNOBS))
def test_knobs_that_change_numerics_rerun_train_and_evaluate(project, knob):
    current = yaml.safe_load((project / "params.yaml").read_text())["runtime"][knob.split(".")[1]]
    stale = stale_after(project, **{knob: not current})
    expected = {f"{stage}@{n}" for stage in NUMERIC_KNOBS[knob] for n in NAMES}
    assert set(stale) == expected and all(knob in deps["params.yaml"] for deps in stale.values())


@pytest.mark.slow
def test_data_stages_give_the_locked_md5s_without_avx(project):
    """download (synthetic), convert and split at full default size, with numpy's AVX2/AVX-512 kernels
    disabled, produce exactly the md5s in the committed dvc.lock (made on an AVX-512 machine)."""
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": NO_AVX}
    for name in NAMES:
        for stage in ("download", "convert", "split"):
            subprocess.run(
                [sys.executable, "-m", "e2e", stage, name],
                cwd=project,
                env=env,
                check=True,
                capture_output=True,
                timeout=600,
            )
    found = status(project)
    for name in NAMES:
        for stage in ("download", "convert", "split"):
            outs = [e.get("changed outs", {}) for e in found.get(f"{stage}@{name}", [])]
            # "not in cache": the md5 equals the lock's, only DVC's cache (empty here) lacks it
            assert all(v == "not in cache" for o in outs for v in o.values()), f"{stage}@{name}: {outs}"


def test_dvc_yaml_names_the_tasks_of_e2e_tasks_in_one_list():
    from e2e.tasks import TASKS

    names = next(v["names"] for v in yaml.safe_load((ROOT / "dvc.yaml").read_text())["vars"] if "names" in v)
    assert names == list(TASKS)
    assert {stage.split("@")[1] for stage in stages()} == set(TASKS)
