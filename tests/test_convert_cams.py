"""convert_cams.py: published SEAM CAM dicts (pickled .npy) -> our .npz, only when asked explicitly."""

import numpy as np
import pytest

import convert_cams
from tool import cli
from tool.cam import load_cams


def published_cams(folder, rng):
    """Write SEAM-style ``np.save``-d dicts {class index 0..19: (H, W) map}; return {id: dict}."""
    folder.mkdir()
    written = {}
    for image_id, keys in (("2007_000032", [0, 14]), ("2007_000039", [19])):
        cam = {k: rng.random((5, 7)).astype(np.float32) for k in keys}
        np.save(folder / f"{image_id}.npy", cam)
        written[image_id] = cam
    return written


def run(argv):
    return convert_cams.main(convert_cams.get_args_parser().parse_args(argv))


def test_converts_every_file_to_npz_with_class_ids(tmp_path):
    written = published_cams(tmp_path / "npy", np.random.default_rng(0))
    summary = run(["--legacy_npy", "--in_dir", str(tmp_path / "npy"), "--out_dir", str(tmp_path / "npz")])
    assert (summary.done, summary.failed) == (2, [])
    for image_id, cam in written.items():
        classes, cams = load_cams(tmp_path / "npz" / f"{image_id}.npz")  # no pickle needed any more
        assert classes.tolist() == [k + 1 for k in sorted(cam)]
        for k, c in enumerate(sorted(cam)):
            np.testing.assert_array_equal(cams[k], cam[c])
    again = run(["--legacy_npy", "True", "--in_dir", str(tmp_path / "npy"), "--out_dir", str(tmp_path / "npz")])
    assert (again.done, again.skipped) == (0, 2)


def test_refuses_without_the_explicit_flag(tmp_path):
    published_cams(tmp_path / "npy", np.random.default_rng(0))
    with pytest.raises(cli.UserError, match="--legacy_npy"):
        run(["--in_dir", str(tmp_path / "npy"), "--out_dir", str(tmp_path / "npz")])
    with pytest.raises(cli.UserError, match="--legacy_npy"):
        run(["--legacy_npy", "False", "--in_dir", str(tmp_path / "npy")])
    assert not (tmp_path / "npz").exists()


def test_a_bad_file_is_named_and_the_rest_converted(tmp_path, capsys):
    published_cams(tmp_path / "npy", np.random.default_rng(0))
    (tmp_path / "npy" / "2008_000002.npy").write_bytes(b"not an array")
    list_file = tmp_path / "ids.txt"
    list_file.write_text("2007_000032\n2008_000002\n")
    summary = run(["--legacy_npy", "--in_dir", str(tmp_path / "npy"), "--out_dir", str(tmp_path / "npz"),
                   "--infer_list", str(list_file)])
    assert summary.done == 1 and [i for i, _ in summary.failed] == ["2008_000002"]
    assert summary.exit_code == 1
    assert "2008_000002" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "npz").iterdir()) == ["2007_000032.npz"]
