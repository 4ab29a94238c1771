"""`e2e tune`'s fixed overrides and search-space values as `dvc exp run -S` takes them (e2e.tune.space):
pure functions, no repository."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from support.tune_study import SPACE, TASK, params


@pytest.mark.parametrize(
    "args, message",
    [
        ([f"train.{TASK}.epochz=2"], f"-S train.{TASK}.epochz=2: 'train.{TASK}.epochz' is not a key of params.yaml"),
        (
            [f"train.{TASK}.epochs=2", f"train.{TASK}.epochs=3"],
            f"train.{TASK}.epochs=3: train.{TASK}.epochs is set twice",
        ),
        ([f"train.{TASK}.epochs=2", f"train.{TASK}.lr=0.001"], f"lr=0.001: train.{TASK}.lr is also searched"),
        ([f"train.{TASK}.epochs=1,2"], "expected key=value, one value of an existing key (no +, ~, @ or sweep)"),
        ([f"+train.{TASK}.epochs=1"], "expected key=value, one value of an existing key"),
        ([f"train.{TASK}.scheduler_kwargs={{step_size:2}}"], f"'train.{TASK}.scheduler_kwargs' is a section"),
        ([f"train.{TASK}.channels={{a:1}}"], "the value {'a': 1} is a mapping"),
        ([f"tune.{TASK}.seed=1"], "the tune section is read by no stage"),
        ([f"train.{TASK}.epochs=[1"], "not key=value as `dvc exp run -S` reads it"),
    ],
)
def test_a_bad_fixed_override_is_refused_naming_it(args, message):
    from e2e.errors import E2EError
    from e2e.tune.space import load_fixed

    with pytest.raises(E2EError, match=re.escape(message)):
        load_fixed(params(), args, TASK, SPACE)


def test_fixed_overrides_are_read_as_dvc_reads_them_and_checked_together():
    """`1e-4` is a number for `dvc exp run -S` (a string for YAML), and a space end is checked with the
    fixed overrides set."""
    from e2e.errors import E2EError
    from e2e.tune.space import load_fixed, load_space

    fixed, raw = load_fixed(params(), [f"train.{TASK}.lr=1e-4", f"train.{TASK}.augment=[flip_eta]"], TASK, {})
    assert fixed == {f"train.{TASK}.lr": 1e-4, f"train.{TASK}.augment": ["flip_eta"]}
    assert raw["train"][TASK]["augment"] == ["flip_eta"] and params()["train"][TASK]["augment"] == []
    space = {"split.test_fraction": {"low": 0.1, "high": 0.5}}
    load_space(params(), TASK, space)  # the default val_fraction leaves rows to train on
    _, raw = load_fixed(params(), ["split.val_fraction=0.5"], TASK, space)
    with pytest.raises(E2EError, match="space.split.test_fraction: the value 0.5 is refused: split.val_fraction"):
        load_space(raw, TASK, space)


def test_set_arguments_read_back_as_the_same_values(tmp_path):
    """Each `key=value` that e2e tune gives `dvc exp run -S` sets, through DVC's own code, that value."""
    from dvc.utils.hydra import apply_overrides
    from ruamel.yaml import YAML

    from e2e.errors import E2EError
    from e2e.tune.space import load_space, set_arg

    values = {"lr": 1e-05, "n": 32, "s": "null", "e": "1e-4", "c": [0, 1], "f": 1.0, "b": True, "z": None}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"a": {key: "old" for key in values}}))
    apply_overrides(path, [set_arg(f"a.{key}", value) for key, value in values.items()])
    written = YAML(typ="safe").load(path.read_text())["a"]  # as DVC reads it: YAML 1.2, where 1e-05 is a number
    assert json.dumps(written, sort_keys=True) == json.dumps(values, sort_keys=True)
    assert set_arg("a.lr", 1e-05) == "a.lr=1e-05" and set_arg("a.c", [0, 1]) == "a.c=[0,1]"
    with pytest.raises(E2EError, match="would read it as another value"):
        set_arg("a.s", "back\\slash")
    with pytest.raises(E2EError, match=re.escape("base_url: the value 'back\\\\slash' is refused: download.base_url=")):
        load_space(params(), TASK, {"download.base_url": {"choices": ["ok", "back\\slash"]}})  # before any trial


def test_differences_name_every_changed_value_and_nothing_else():
    from e2e.tune.space import differences

    before = {"train": {"lr": 0.001, "augment": [], "kw": {"d": 0.5}}, "runtime": {"threads": 1}, "gone": 1}
    after = {"train": {"lr": 0.002, "augment": [], "kw": {"d": 0.5, "e": "x"}}, "runtime": {"threads": 1}}
    assert differences(before, after) == {
        "train.lr": "0.001 -> 0.002",
        "train.kw.e": '(none) -> "x"',
        "gone": "1 -> (none)",
    }
    assert differences(before, before) == {}
