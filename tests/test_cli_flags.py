"""One meaning per flag: every script's parser is built, and a flag name shared by several scripts must have
the same type, default, requirement, choices and action everywhere (unless its default is per stage by
design, or an exception below says why). Renamed flags keep their old names only as listed aliases."""

import argparse
import importlib
import re
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in REPO.glob("*.py")
                 if "def get_args_parser" in p.read_text(encoding="utf-8")) + ["voc12.make_cls_labels"]

# Same meaning and type everywhere; the default differs by stage on purpose (published per-script values).
PER_STAGE_DEFAULT = {
    "--weights", "--network", "--session_name", "--save_dir", "--save_path", "--seed_label_root",
    "--lr", "--epochs", "--max_epoches", "--batch_size", "--radius", "--num_workers", "--out", "--out_dir",
    "--scales", "--momentum", "--crop_size", "--label_dir", "--wt_dec", "--max_iters",
}
# (script, flag): why this one differs.
EXCEPTIONS = {
    ("eval_miou", "--voc12_root"): "optional: --gt_dir alone locates the ground truth",
    ("run_pipeline", "--voc12_root"): "optional: without it the driver generates the synthetic dataset",
    ("run_pipeline", "--infer_list"): "the driver scores pseudo labels, so it defaults to train (the paper's "
                                      "pseudo-label split), not train_aug",
    ("convert_cams", "--infer_list"): "optional: by default every .npy file of --in_dir is converted",
    ("convert_cams", "--voc12_root"): "optional: only needed to look up an --infer_list name",
    ("infer_seg", "--infer_list"): "optional: --image_dir labels every image of a folder instead",
    ("infer_seg", "--voc12_root"): "optional: --image_dir (and --gt_dir) replace it",
    ("download_weights", "--list"): "prints the table of published files; this script reads no id list",
    ("train_seg", "--wt_dec"): "default per --arch (tool.segmentation.recipe): DeepLab v2's 5e-4, PSPNet's 1e-4",
    ("train_inst", "--arch"): "Mask R-CNN networks (network/maskrcnn.py), not the segmentation networks",
    ("infer_inst", "--arch"): "Mask R-CNN networks (network/maskrcnn.py), not the segmentation networks",
}
# Earlier names that keep working (README commands and users' shell history): script -> {alias: flag}.
ALIASES = {
    "make_seed_labels": {"--list": "--infer_list"},
    "make_baseline_labels": {"--list": "--infer_list"},
    "voc12.make_cls_labels": {"--list": "--train_list"},
    "eval_miou": {"--ignore_pred_255": "--pred_255"},
    "download_weights": {"--width": "--backbone_width"},
}


def parsers() -> dict[str, argparse.ArgumentParser]:
    return {name: importlib.import_module(name).get_args_parser() for name in SCRIPTS}


def canonical_flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """``--dest`` -> action, for the long option named after the action's destination."""
    return {f"--{a.dest}": a for a in parser._actions if f"--{a.dest}" in a.option_strings}


def signature(action: argparse.Action, per_stage: bool = False) -> dict:
    """What a flag accepts (argparse reads a missing type as str); ``per_stage``: a required flag and a
    flag with a default count as the same (the default is what differs)."""
    plain = action.type is None and isinstance(action, argparse._StoreAction)
    kind = "str" if plain else getattr(action.type, "__name__", action.type)
    return {"type": kind, "choices": action.choices, "nargs": action.nargs, "action": type(action).__name__,
            **({} if per_stage else {"required": action.required})}


def test_every_stage_script_has_a_parser():
    for script in ("train_SEAM", "infer_SEAM", "make_seed_labels", "train_aff_gated_aff",
                   "train_infer_A2GNN_box", "train_infer_A2GNN_others", "eval_miou", "download_weights"):
        assert script in SCRIPTS


def test_shared_flags_have_one_type_and_default():
    seen: dict[str, list[tuple[str, argparse.Action]]] = {}
    for script, parser in parsers().items():
        for flag, action in canonical_flags(parser).items():
            if (script, flag) not in EXCEPTIONS:
                seen.setdefault(flag, []).append((script, action))
    problems = []
    for flag, uses in seen.items():
        first_script, first = uses[0]
        for script, action in uses[1:]:
            per_stage = flag in PER_STAGE_DEFAULT
            if signature(action, per_stage) != signature(first, per_stage):
                problems.append(f"{flag}: {first_script} {signature(first)} vs {script} {signature(action)}")
            if flag not in PER_STAGE_DEFAULT and action.default != first.default:
                problems.append(f"{flag}: default {first.default!r} in {first_script}, {action.default!r} "
                                f"in {script}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("flag", ["--voc12_root", "--train_list", "--infer_list", "--device", "--seed",
                                  "--shard", "--overwrite", "--backbone_width"])
def test_common_flags_are_used_by_several_scripts(flag):
    users = [s for s, p in parsers().items() if flag in canonical_flags(p)]
    assert len(users) >= 2, users


def test_aliases_are_listed_and_reach_the_same_destination():
    for script, parser in parsers().items():
        flags = canonical_flags(parser)
        aliases = {option: f"--{a.dest}" for a in parser._actions for option in a.option_strings
                   if option.startswith("--") and option != f"--{a.dest}"}
        assert aliases == ALIASES.get(script, {}), script
        for alias, flag in aliases.items():
            assert flag in flags, (script, alias)


def test_voc12_root_is_required_where_the_dataset_is_read():
    for script, parser in parsers().items():
        action = canonical_flags(parser).get("--voc12_root")
        if action is not None and (script, "--voc12_root") not in EXCEPTIONS:
            assert action.required, script


def test_list_aliases_parse_like_the_new_names():
    from eval_miou import get_args_parser as eval_parser
    from make_seed_labels import get_args_parser as seeds_parser

    old = seeds_parser().parse_args(["--type", "box", "--voc12_root", "V", "--list", "train.txt"])
    new = seeds_parser().parse_args(["--type", "box", "--voc12_root", "V", "--infer_list", "train.txt"])
    assert old == new
    base = ["--pred_dir", "p", "--gt_dir", "g", "--list", "train"]
    assert eval_parser().parse_args([*base, "--ignore_pred_255"]).pred_255 == "wrong"
    assert eval_parser().parse_args(base).pred_255 == "background"


def test_stage_2_writes_where_stage_3_reads():
    import train_aff_gated_aff
    import train_infer_A2GNN_box

    aff = train_aff_gated_aff.get_args_parser().parse_args(["--voc12_root", "V"])
    box = train_infer_A2GNN_box.get_args_parser().parse_args(["--voc12_root", "V"])
    assert Path(aff.save_dir) / f"{aff.session_name}.pth" == Path(box.weights)
    assert Path(aff.label_dir) == Path(box.seed_label_root)


def test_per_image_num_workers_default_to_no_loader_process_on_cpu():
    import infer_SEAM
    import infer_seg
    import train_infer_A2GNN_box
    from tool.runner import GPU_LOAD_WORKERS, resolve_load_workers

    for parser, argv in ((train_infer_A2GNN_box.get_args_parser(), ["--voc12_root", "V"]),
                         (infer_seg.get_args_parser(), ["--weights", "w.pth"]),
                         (infer_SEAM.get_args_parser(), ["--voc12_root", "V"])):
        value = parser.parse_args(argv).num_workers
        assert resolve_load_workers(value, "cpu") == 0 and resolve_load_workers(value, "cuda:1") == GPU_LOAD_WORKERS
    assert resolve_load_workers(3, "cuda") == 3


@pytest.mark.parametrize(("cores", "gpus", "expected"), [(16, 1, 4), (8, 1, 4), (6, 1, 3), (32, 8, 2), (4, 4, 1),
                                                         (2, 0, 1)])
def test_cpu_workers_default_is_four_at_most_half_the_cores_of_each_gpu(cores, gpus, expected, monkeypatch):
    import infer_seg
    from tool.runner import GPU_CPU_WORKERS, resolve_cpu_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    value = infer_seg.get_args_parser().parse_args(["--weights", "w.pth"]).cpu_workers
    assert GPU_CPU_WORKERS == 4
    assert resolve_cpu_workers(value, "cuda") == expected and resolve_cpu_workers(value, "cuda:0") == expected
    assert resolve_cpu_workers(value, "cpu") == 0 and resolve_cpu_workers(3, "cuda") == 3


def test_batch_images_default_is_one_on_cpu_and_gpu_batch_images_on_cuda():
    import train_infer_A2GNN_box
    import train_infer_A2GNN_others
    from stages.a2gnn import GPU_BATCH_IMAGES, resolve_batch_images

    for module in (train_infer_A2GNN_box, train_infer_A2GNN_others):
        value = module.get_args_parser().parse_args(["--voc12_root", "V"]).batch_images
        assert resolve_batch_images(value, "cpu") == 1
        assert resolve_batch_images(value, "cuda") == resolve_batch_images(value, "cuda:1") == GPU_BATCH_IMAGES == 32
    assert resolve_batch_images(5, "cuda") == 5 and resolve_batch_images(5, "cpu") == 5

# The stage scripts that run on a GPU at dataset scale: a plain ``python`` run starts one worker per visible
# GPU (tool.dist.launch). eval_classifier, infer_image and run_pipeline (a driver) stay one process; the driver's
# --gpus goes to the training scripts it launches.
GPU_STAGES = {"train_SEAM", "infer_SEAM", "train_aff_gated_aff", "train_infer_A2GNN_box", "train_infer_A2GNN_others",
              "train_seg", "infer_seg", "train_inst", "infer_inst"}


def test_every_gpu_stage_script_starts_one_worker_per_gpu():
    with_gpus = {s for s, p in parsers().items() if "--gpus" in canonical_flags(p)}
    assert with_gpus == GPU_STAGES | {"run_pipeline"}
    entry = re.compile(r"\n    sys\.exit\(cli\.run\(lambda: (tdist\.)?launch\(main, args, args\.gpus, "
                       r"args\.device\)\)\)\n")
    for script in GPU_STAGES:
        assert entry.search((REPO / f"{script}.py").read_text(encoding="utf-8")), script
