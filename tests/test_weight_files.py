"""`karmma weights`: the weight files a config's run reads, and their download from a local HTTP server.

No internet: every download comes from an ``http.server`` on 127.0.0.1 (``--base-url``)."""

import hashlib
import http.server
import os
import threading
from pathlib import Path

import pytest
import torch

from karmma.cli import main
from karmma.configs import CONFIGS, config_path
from karmma.configuration import load_config
from karmma.train_config import TrainConfig
from karmma.weight_files import config_weight_files, download_verified

ROOT = Path(__file__).resolve().parents[1]
SWIN3D_T = "swin3d_t-7615ae03.pth"  # torchvision's file name of Swin3D_T_Weights.KINETICS400_V1
SWIN3D_B = "swin3d_b_1k-24f7c7c6.pth"  # Swin3D_B_Weights.KINETICS400_V1
RESNET18 = "resnet18-f37072fd.pth"  # ResNet18_Weights.IMAGENET1K_V1


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (name -> bytes); a name in ``truncated`` announces its full length and sends half."""

    files: dict[str, bytes] = {}
    truncated: set[str] = set()

    def do_GET(self):  # noqa: N802 - http.server's name
        name = self.path.rsplit("/", 1)[-1]
        if name not in self.files:
            self.send_error(404)
            return
        body = self.files[name]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if name in self.truncated else body)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server(monkeypatch):
    """``(base_url, handler)``: a loopback HTTP server; set ``handler.files`` / ``handler.truncated``."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    handler = type("Files", (_Files,), {"files": {}, "truncated": set()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/models", handler
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty ``$TORCH_HOME``; returns its ``hub/checkpoints`` folder (not created)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and "Traceback" not in "\n".join(err), err
    return err[-1]


def test_download_keeps_a_file_whose_hash_matches_the_published_prefix(server, tmp_path):
    base, handler = server
    body = os.urandom(300_000)
    sha256 = hashlib.sha256(body).hexdigest()
    name = f"model-{sha256[:8]}.pth"  # torch.hub's convention: the name carries the hash prefix
    handler.files = {name: body}
    target = tmp_path / "cache" / name
    assert download_verified(f"{base}/{name}", target, sha256[:8]) == sha256
    assert target.read_bytes() == body
    assert os.listdir(target.parent) == [name]  # no temporary file left


@pytest.mark.parametrize("served", ["truncated", "other hash", "absent"])
def test_a_bad_download_is_one_line_and_leaves_no_file(served, server, torch_home, capsys):
    base, handler = server
    if served != "absent":
        handler.files = {SWIN3D_T: os.urandom(200_000)}  # random bytes: not the published 7615ae03...
    if served == "truncated":
        handler.truncated = {SWIN3D_T}
    code = main(["weights", "fetch", str(config_path("epic100", "baseline")), "--base-url", base])
    assert code == 2
    error = _one_error_line(capsys)
    assert error.startswith("karmma weights: error: ") and f"{base}/{SWIN3D_T}" in error
    expected = {
        "truncated": "truncated download (100000 of 200000 bytes)",
        "other hash": "does not start with the published 7615ae03",
        "absent": "HTTP 404",
    }[served]
    assert expected in error, error
    assert not torch_home.exists() or os.listdir(torch_home) == []  # neither the file nor a temporary one


def test_fetch_skips_present_files_and_names_what_no_one_publishes(server, torch_home, capsys, monkeypatch):
    """The EPIC-100 teacher: V is torchvision's (present here), F and A are unimodal runs of docs/epic.md."""
    base, _ = server
    monkeypatch.chdir(ROOT)
    torch_home.mkdir(parents=True)
    (torch_home / SWIN3D_B).write_bytes(b"not torchvision's swin3d_b")
    # F and A are still missing: no one publishes them, so the check still fails
    assert main(["weights", "fetch", "configs/epic100/teacher.yaml", "--base-url", base]) == 1
    err = capsys.readouterr().err
    assert "not torchvision's file" in err and "24f7c7c6" in err  # present, but its hash says it is another file
    assert (torch_home / SWIN3D_B).read_bytes() == b"not torchvision's swin3d_b"  # never overwritten
    docs = (ROOT / "docs" / "epic.md").read_text()
    for key in ("F", "A"):
        command = (
            f"karmma train configs/epic100/teacher.yaml stage=unimodal unimodal_modality={key} "
            f"trainer.name=epic100_unimodal_{key}"
        )
        line = next(line for line in err.splitlines() if line.startswith(f"extractors.{key} "))
        assert "no one publishes it" in line and command in line and "docs/epic.md, step 3" in line
        # the command docs/epic.md gives for it (one loop over F and A)
        assert command.replace(f"={key}", "=$m").replace(f"_{key}", "_$m") in docs.replace("\\\n      ", "")
    assert "2 file(s) above no one publishes" in err


def test_the_epic100_teacher_lists_each_file_present_or_missing(torch_home, tmp_path, capsys, monkeypatch):
    """`karmma weights configs/epic100/teacher.yaml` from the repository root: nothing there yet."""
    monkeypatch.chdir(ROOT)
    assert main(["weights", "configs/epic100/teacher.yaml"]) == 1  # a run would stop: files are missing
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:5]}
    assert rows["pretrained.V"][1:] == ["KINETICS400_V1", "missing", "-", str(torch_home / SWIN3D_B)]
    for key in ("F", "A"):
        checkpoint = f"runs/epic100_unimodal_{key}/checkpoints/best.ckpt"
        assert rows[f"extractors.{key}"][1:] == [checkpoint, "missing", "-", str(ROOT / checkpoint)]

    # elsewhere, with the files in place: present, with their SHA-256
    monkeypatch.chdir(tmp_path)
    torch_home.mkdir(parents=True)
    (torch_home / SWIN3D_B).write_bytes(b"V")
    flow = tmp_path / "runs" / "epic100_unimodal_F" / "checkpoints" / "best.ckpt"
    flow.parent.mkdir(parents=True)
    flow.write_bytes(b"F")
    assert main(["weights", str(CONFIGS / "epic100" / "teacher.yaml")]) == 1  # A is still missing
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:5]}
    assert "present, not torchvision's file" in rows["pretrained.V"]
    assert hashlib.sha256(b"V").hexdigest() in rows["pretrained.V"]
    assert " present " in rows["extractors.F"] and hashlib.sha256(b"F").hexdigest() in rows["extractors.F"]
    assert " missing " in rows["extractors.A"]


def test_the_table_names_the_files_a_run_reads(torch_home, monkeypatch):
    """No second rule: the files the student's extractors open when built are the table's."""
    import karmma.models.audio_resnet
    import karmma.models.video_swin
    from karmma.models.weights import resolve_weights_file
    from karmma.stages import build_stage_model

    config = load_config(TrainConfig, config_path("epic100", "student"))
    listed = config_weight_files(config, "student")
    extractor_files = {f.setting: f.path for f in listed if f.setting.startswith("pretrained.")}
    assert set(extractor_files) == {"pretrained.V", "pretrained.F", "pretrained.A"}
    assert [f for f in listed if f.setting == "teacher"][0].needed is False  # teacher_logits: cache
    torch_home.mkdir(parents=True)
    for path in extractor_files.values():
        path.touch()
    opened = []

    def record(module, weights, weights_enum, first_layer, drop_prefixes):
        opened.append(resolve_weights_file(weights, weights_enum))  # a run's rule: raises on a wrong path

    monkeypatch.setattr(karmma.models.video_swin, "load_pretrained", record)
    monkeypatch.setattr(karmma.models.audio_resnet, "load_pretrained", record)
    with torch.device("meta"):
        build_stage_model(config, {"verb": 97, "noun": 300})
    assert sorted(opened) == sorted(extractor_files.values())


def test_every_shipped_config_is_listed_by_default(torch_home, capsys):
    assert main(["weights"]) == 1  # the real-data configs' weights are not here
    out = capsys.readouterr().out
    for path in CONFIGS.glob("*/*.yaml"):
        assert f"{path.parent.name}/{path.name}" in out


def test_weights_arguments_are_checked(capsys):
    assert main(["weights", "fetch"]) == 2
    assert "takes one CONFIG" in _one_error_line(capsys)
    assert main(["weights", "configs/epic100/student.yaml", "--base-url", "http://127.0.0.1:1"]) == 2
    assert "--base-url is for 'karmma weights fetch CONFIG'" in _one_error_line(capsys)


def test_overrides_change_what_is_listed_and_the_fetch_hint_repeats_them(torch_home, capsys, monkeypatch):
    """docs/epic.md's unimodal run of F: only its Kinetics Swin3D-B, fetched with the same overrides."""
    monkeypatch.chdir(ROOT)
    overrides = ["stage=unimodal", "unimodal_modality=F", "pretrained={F: KINETICS400_V1}"]
    assert main(["weights", "configs/epic100/teacher.yaml", *overrides]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["pretrained.F", "pretrained.F:"]
    assert lines[2].split()[1:] == ["KINETICS400_V1", "missing", "-", str(torch_home / SWIN3D_B)]
    assert lines[3].endswith(
        "karmma weights fetch configs/epic100/teacher.yaml stage=unimodal unimodal_modality=F "
        "'pretrained={F: KINETICS400_V1}'"
    )


def test_the_check_passes_once_every_file_a_run_reads_is_there(torch_home, tmp_path, capsys, monkeypatch):
    """Exit 0 only when nothing a run reads is missing: the student's three torchvision files here."""
    monkeypatch.chdir(tmp_path)
    config = str(CONFIGS / "epic100" / "student.yaml")
    assert main(["weights", config]) == 1
    assert "3 file(s) a run reads are missing" in capsys.readouterr().err
    files = [f for f in config_weight_files(load_config(TrainConfig, config), "student") if f.needed]
    torch_home.mkdir(parents=True)
    for file in files:
        file.path.write_bytes(b"weights")
    assert main(["weights", config]) == 0
    assert capsys.readouterr().err == ""
