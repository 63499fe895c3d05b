"""eval_inst.py: a user's wrong file is one UserError line naming its flag; a bug keeps its traceback."""

import json

import pytest

import eval_inst
from tool.cli import UserError

GT = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "aeroplane"}]}


def run(gt, pred):
    return eval_inst.main(eval_inst.get_args_parser().parse_args(["--gt_json", str(gt), "--pred_json", str(pred)]))


@pytest.mark.parametrize("pred, message", [
    (None, r"--pred_json .*missing\.json: COCO file not found"),
    ("folder", r"--pred_json .*folder"),
    ("{not json", r"--pred_json .*not a JSON file"),
    ({"images": []}, r"--pred_json .*neither a COCO results list nor an instances file"),
    ([{"image_id": 1, "score": 0.5}], r"--pred_json .*not a COCO results list .*category_id"),
    ("3", r"--pred_json .*not a COCO results list"),
])
def test_a_wrong_prediction_file_names_its_flag(tmp_path, pred, message):
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    path = tmp_path / "missing.json"
    if pred == "folder":
        path = tmp_path / "folder"
        path.mkdir()
    elif isinstance(pred, str):
        path.write_text(pred)
    elif pred is not None:
        path.write_text(json.dumps(pred))
    with pytest.raises(UserError, match=message):
        run(tmp_path / "gt.json", path)


def test_a_wrong_ground_truth_file_names_its_flag(tmp_path):
    (tmp_path / "pred.json").write_text("[]")
    (tmp_path / "gt.json").write_text(json.dumps([]))
    with pytest.raises(UserError, match=r"--gt_json .*gt\.json: not a COCO instances file"):
        run(tmp_path / "gt.json", tmp_path / "pred.json")


def test_a_bug_inside_the_evaluation_is_not_turned_into_a_user_error(tmp_path, monkeypatch):
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    (tmp_path / "pred.json").write_text("[]")

    def broken(*args):
        raise KeyError("segmentation")

    monkeypatch.setattr(eval_inst, "mask_ap", broken)
    with pytest.raises(KeyError) as caught:
        run(tmp_path / "gt.json", tmp_path / "pred.json")
    assert not isinstance(caught.value, UserError)
