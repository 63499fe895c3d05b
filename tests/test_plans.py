"""stages.plans: the named plans as data, --set overrides typed by the dataclass fields, the run's provenance."""

import dataclasses
import json
import math
import subprocess
from pathlib import Path

import pytest

from stages import plans
from tool import cli

REPO = Path(__file__).resolve().parents[1]


def as_text(value) -> str:
    """How a user writes a value on the command line: tuples with commas."""
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("name", sorted(plans.PLANS))
def test_every_value_of_every_plan_survives_set_as_its_text(name):
    plan, seg, inst = plans.PLANS[name], plans.SEG_PLANS[name], plans.INST_PLANS[name]
    items = [f"{f.name}={as_text(getattr(plan, f.name))}" for f in dataclasses.fields(plan)]
    items += [f"seg.{f.name}={as_text(getattr(seg, f.name))}" for f in dataclasses.fields(seg)]
    items += [f"inst.{f.name}={as_text(getattr(inst, f.name))}" for f in dataclasses.fields(inst)]
    new_plan, new_seg, new_inst, overrides = plans.apply_overrides(plan, seg, inst, items)
    assert new_plan == plan and new_seg == seg and new_inst == inst
    assert len(overrides) == len(items)
    for key, value in overrides.items():  # typed: the field's own type, element by element for tuples
        part, _, name = key.rpartition(".")
        field_value = getattr({"seg": seg, "inst": inst, "": plan}[part], name)
        assert type(value) is type(field_value)
        if isinstance(value, tuple):
            assert [type(v) for v in value] == [type(v) for v in field_value]


def test_overrides_change_only_their_keys():
    plan, seg, inst, overrides = plans.apply_overrides(
        plans.PLANS["default"], plans.SEG_PLANS["default"], plans.INST_PLANS["default"],
        ["cam_epochs=4", "cam_lr=2e-3", "box_constraint=false", "jitter=0,0,0,0.05", "seg.arch=deeplabv2_resnet101",
         "inst.iters=50"])
    expected = dataclasses.replace(plans.PLANS["default"], cam_epochs=4, cam_lr=0.002, box_constraint=False,
                                   jitter=(0.0, 0.0, 0.0, 0.05))
    assert plan == expected and seg == dataclasses.replace(plans.SEG_PLANS["default"], arch="deeplabv2_resnet101")
    assert inst == dataclasses.replace(plans.INST_PLANS["default"], iters=50)
    assert overrides["cam_lr"] == 0.002 and overrides["box_constraint"] is False


@pytest.mark.parametrize("item, message", [
    ("cam_epoch=3", "unknown key 'cam_epoch'; valid keys: num_train_aug"),
    ("seg.epochs=3", "unknown key 'seg.epochs'"),
    ("iters=3", "unknown key 'iters'"),  # a stage-4 key needs its seg. prefix
    ("inst.crop=3", "unknown key 'inst.crop'"),
    ("cam_epochs", "expected key=value"),
    ("cam_epochs=2.5", "cam_epochs=2.5: not a int"),
    ("box_constraint=maybe", "box_constraint=maybe: not a bool"),
    ("jitter=0,0", "jitter=0,0: not a tuple[float, float, float, float]"),
    ("cam_scales=", "cam_scales=: not a tuple[float, ...]"),
    ("cam_resize_long=96,x", "cam_resize_long=96,x: not a tuple[int, int]"),
])
def test_a_bad_set_names_the_key_and_what_is_valid(item, message):
    with pytest.raises(cli.UserError) as err:
        plans.apply_overrides(plans.PLANS["quick"], plans.SEG_PLANS["quick"], plans.INST_PLANS["quick"], [item])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_default_plan_name_keeps_the_flags_meaning():
    assert plans.default_plan_name(True, "/data/VOC2012") == "quick"
    assert plans.default_plan_name(False, "/data/VOC2012") == "voc"
    assert plans.default_plan_name(False, None) == "default"
    assert set(plans.PLANS) == set(plans.SEG_PLANS) == set(plans.INST_PLANS)


def test_plan_record_and_provenance():
    record = plans.plan_record("quick", plans.PLANS["quick"], plans.SEG_PLANS["quick"], plans.INST_PLANS["quick"],
                               {"cam_epochs": 3})
    as_json = json.loads(json.dumps(dataclasses.asdict(plans.PLANS["quick"])))  # tuples as lists, as on disk
    assert record["values"] == as_json and record["overrides"] == {"cam_epochs": 3}
    assert math.isclose(record["values"]["cam_sure_bg_score"], 0.95 ** 24)
    info = plans.provenance(REPO, "cpu")
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True)
    assert info["code_version"] == (git.stdout.strip() if git.returncode == 0 else info["code_version"])
    assert info["date"].endswith("+00:00") and info["machine"]["device"] == "cpu" and info["machine"]["gpu"] is None
    assert info["machine"]["cores"] >= 1 and info["machine"]["torch_threads"] >= 1 and info["machine"]["cpu"]
