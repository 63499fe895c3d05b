"""download_weights.py against a loopback HTTP server (no internet): download, place, verify, report."""

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch
from test_checkpoint import backbone_mxnet_arrays, write_mxnet_params

import download_weights
from network import resnet38_aff_gated, resnet38_SEAM, resnet38d
from network.deeplab import TORCHVISION_FILES
from tool import cli
from tool.checkpoint import load_checkpoint, save_checkpoint
from tool.weights import CHECKSUM_SOURCES, PUBLISHED, MissingWeights, Published

W = 1 / 8


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(handler):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A folder holding every published checkpoint name, written from width-1/8 networks."""
    root = tmp_path_factory.mktemp("mirror")
    torch.manual_seed(0)
    save_checkpoint(resnet38_SEAM.Net(width=W), root / "resnet38_SEAM.pth")
    aff = resnet38_aff_gated.Net(width=W)
    for name in ("resnet38_aff_SEAM", "aff_box", "aff_scribble", "aff_image", "aff_point"):
        save_checkpoint(aff, root / f"{name}.pth")
    write_mxnet_params(root / "ilsvrc-cls_rna-a1_cls1000_ep-0001.params",
                       backbone_mxnet_arrays(resnet38d.Net(width=W)))
    return root


def run(args, capsys):
    code = download_weights.main(download_weights.get_args_parser().parse_args(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_downloads_all_checkpoints_from_mirror_and_verifies(tmp_path, mirror, serve, capsys):
    url = serve(functools.partial(QuietHandler, directory=str(mirror)))
    dest = tmp_path / "netWeights"
    code, out = run(["--base_url", url, "--dest", str(dest), "--width", str(W)], capsys)
    assert code == 0, out
    for name in ("resnet38_SEAM.pth", "resnet38_aff_SEAM.pth", "ilsvrc-cls_rna-a1_cls1000_ep-0001.params"):
        assert (dest / name).read_bytes() == (mirror / name).read_bytes()
    for sup in ("box", "scribble", "image", "point"):
        assert (dest / "final_model" / f"aff_{sup}.pth").is_file()
    n_seam = len(resnet38_SEAM.Net(width=W).state_dict())
    assert f"resnet38_SEAM.pth: matched {n_seam}, missing 0, unexpected 0" in out
    assert "done: 7 ok, 0 to place by hand, 0 failed" in out
    assert not list(dest.rglob(".*"))  # no temporary files left
    # a second run finds the files and does not download again
    code, out = run(["--base_url", "http://127.0.0.1:9/", "--dest", str(dest), "--width", str(W)], capsys)
    assert code == 0 and "downloading" not in out


def test_wrong_or_missing_files_fail(tmp_path, mirror, serve, capsys):
    served = tmp_path / "served"
    served.mkdir()
    (served / "aff_point.pth").write_bytes((mirror / "resnet38_SEAM.pth").read_bytes())  # wrong network
    url = serve(functools.partial(QuietHandler, directory=str(served)))
    code, out = run(["--base_url", url, "--dest", str(tmp_path / "w"), "--width", str(W),
                     "--files", "aff_point", "resnet38_SEAM"], capsys)
    assert code == 1
    assert "aff_point: FAILED" in out and "do not fit network.resnet38_aff_gated.Net" in out
    assert "resnet38_SEAM: FAILED" in out and "404" in out
    assert "0 ok, 0 to place by hand, 2 failed" in out


def test_baidu_only_files_are_placed_by_hand(tmp_path, mirror, capsys):
    dest = tmp_path / "netWeights"
    args = ["--dest", str(dest), "--files", "aff_box", "resnet38_aff_SEAM", "--width", str(W)]
    code, out = run(args, capsys)
    assert code == 0
    assert f"place it at {dest / 'final_model' / 'aff_box.pth'}" in out and "cvfg" in out
    assert "0 ok, 2 to place by hand" in out
    (dest / "final_model").mkdir(parents=True)
    (dest / "final_model" / "aff_box.pth").write_bytes((mirror / "aff_box.pth").read_bytes())
    code, out = run(["--dest", str(dest), "--files", "aff_box", "--width", str(W)], capsys)
    assert code == 0 and "aff_box: verified" in out


def test_google_drive_files_go_through_gdown(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        Path(kwargs["output"]).write_bytes(b"zip bytes")
        return kwargs["output"]

    monkeypatch.setattr(download_weights.gdown, "download", fake_download)
    code, out = run(["--files", "seed_labels", "--data_dir", str(tmp_path / "data")], capsys)
    assert code == 0, out
    assert calls == [{"id": "1d6nntO4kfgKN45o37GjTYWdu6eLF8RXc", "output": str(tmp_path / "data" / "seed_labels.zip"),
                      "quiet": False, "resume": True, "timeout": 60.0}]
    assert f"sha256 {hashlib.sha256(b'zip bytes').hexdigest()}" in out  # printed for the user to record


def test_list_table(capsys):
    code, out = run(["--list"], capsys)
    assert code == 0
    for name in ("resnet38_SEAM.pth", "resnet38_aff_SEAM.pth", "aff_box.pth", "aff_scribble.pth",
                 "aff_image.pth", "aff_point.pth", "ilsvrc-cls_rna-a1_cls1000_ep-0001.params",
                 "1jWsV5Yev-PwKgvvtUM3GnY0ogb50-qKa", "1d6nntO4kfgKN45o37GjTYWdu6eLF8RXc", "cvfg"):
        assert name in out
    assert "netWeights/final_model/aff_point.pth" in out


def range_server(payload: bytes, log: list, cut_first_at: int | None = None):
    """A handler serving ``payload`` with HTTP ranges; the first answer breaks off after ``cut_first_at``
    bytes (its Content-Length still says the whole file)."""

    class Handler(QuietHandler):
        def do_GET(self):
            asked = self.headers.get("Range")
            log.append(asked)
            start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
            body = payload[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
            self.end_headers()
            if cut_first_at is not None and len(log) == 1:
                self.wfile.write(body[:cut_first_at])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


def item_at(url: str, md5: str | None = None) -> Published:
    return Published("x", "f.params", "weights", None, "a test", "a test server", url=url, md5=md5)


def test_interrupted_download_resumes_from_the_partial_file(tmp_path, serve):
    payload = bytes(range(256)) * 12_000  # 3 MB
    log = []
    url = serve(range_server(payload, log, cut_first_at=1_500_000))
    target = tmp_path / "w" / "f.params"
    with pytest.raises(OSError, match="run again to resume"):
        download_weights.fetch(item_at(f"{url}/f.params"), target, timeout=10, progress=False)
    assert not target.exists()
    size = download_weights.fetch(item_at(f"{url}/f.params"), target, timeout=10, progress=False)
    assert size == len(payload) and target.read_bytes() == payload
    assert log[0] is None and log[-1].startswith("bytes=") and int(log[-1][6:-1]) > 0  # resumed, not restarted
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.params"]  # no partial file left


def test_checksum_mismatch_deletes_the_download(tmp_path, serve):
    payload = b"not the published file"
    url = serve(range_server(payload, []))
    target = tmp_path / "f.params"
    with pytest.raises(ValueError, match="md5 .* differs from the published 0{32}"):
        download_weights.fetch(item_at(f"{url}/f.params", "0" * 32), target, timeout=10, progress=False)
    assert not target.exists()
    digest = hashlib.md5(payload).hexdigest()
    download_weights.fetch(item_at(f"{url}/f.params", digest), target, timeout=10, progress=False)
    assert target.read_bytes() == payload


def test_failure_names_the_place_for_a_hand_downloaded_file(tmp_path, capsys):
    dest = tmp_path / "netWeights"
    code, out = run(["--base_url", "http://127.0.0.1:9/", "--dest", str(dest), "--files", "aff_box",
                     "--backbone_width", str(W)], capsys)
    assert code == 1
    assert "to do it by hand, get aff_box.pth from BaiduYun" in out
    assert f"place it at {dest / 'final_model' / 'aff_box.pth'}" in out


def test_checksums_are_only_the_published_ones_and_sourced():
    assert {p.key: p.md5 for p in PUBLISHED if p.md5} == {"ilsvrc": "ff21f45d6bf03284100dcbec571edfad"}
    assert not [p.key for p in PUBLISHED if p.sha256]  # no full sha256 is published; none is made up
    prefixes = {p.key: p.sha256_prefix for p in PUBLISHED if p.sha256_prefix}
    assert prefixes == {"resnet101": "63fe2227", "resnet50": "0676ba61"}  # torchvision's file names
    assert set(CHECKSUM_SOURCES) == {p.key for p in PUBLISHED if p.md5 or p.sha256_prefix}
    assert {p.filename for p in PUBLISHED if p.key in prefixes} == set(TORCHVISION_FILES.values())


def test_torchvision_backbone_checked_by_its_sha256_prefix(tmp_path, serve, capsys):
    served = tmp_path / "served"
    served.mkdir()
    (served / "resnet50-0676ba61.pth").write_bytes(b"not torchvision's file")
    url = serve(functools.partial(QuietHandler, directory=str(served)))
    code, out = run(["--base_url", url, "--dest", str(tmp_path / "w"), "--files", "resnet50"], capsys)
    assert code == 1 and "differs from the published 0676ba61" in out
    assert not list((tmp_path / "w").glob("*.pth"))  # the mismatching download is deleted
    net = download_weights.build_network("resnet101", 1.0)  # what a torchvision file is verified against
    assert sum(p.numel() for p in net.parameters()) == 44_549_160  # torchvision's ResNet-101


@pytest.mark.parametrize("path, words", [
    ("w/resnet38_SEAM.pth", ["python download_weights.py --files resnet38_SEAM --dest w' fetches it there"]),
    ("netWeights/resnet38_SEAM.pth", ["'python download_weights.py --files resnet38_SEAM' fetches it there"]),
    ("netWeights/final_model/aff_box.pth", ["BaiduYun", "cvfg", "put it at netWeights/final_model/aff_box.pth"]),
    ("x/my_own.pth", ["weights file not found: x/my_own.pth", "python download_weights.py --list"]),
])
def test_a_missing_weights_file_is_one_line_saying_how_to_get_it(tmp_path, monkeypatch, capsys, path, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingWeights) as err:
        load_checkpoint(resnet38d.Net(width=W), path)
    assert isinstance(err.value, FileNotFoundError) and "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)
    assert cli.run(lambda: load_checkpoint(resnet38d.Net(width=W), path)) == 2
    assert capsys.readouterr().err.startswith(f"error: weights file not found: {path}; ")
