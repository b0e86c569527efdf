"""Every weight file a config needs, where a run looks for it, and the download of those torchvision publishes.

What ``karmma weights`` lists and ``karmma weights fetch`` downloads. The files come from the
rules a run follows, not from a second copy of them: extractor weights from
:func:`karmma.stages.stage_extractor_specs` and
:func:`karmma.models.weights.weights_location` (a torchvision name means its file in
``$TORCH_HOME/hub/checkpoints/``), karmma checkpoints (``extractors.<M>``, ``teacher``, a
``pretrained.<M>`` ending in ``.ckpt``) from the paths the config names.

The download is the only network access in karmma, and only on request: it streams to a
temporary file beside the target, checks the SHA-256 prefix that torchvision publishes in
the file name (as ``torch.hub`` does with ``check_hash``) and renames the file into place
only then; a truncated download or another hash leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shlex
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from karmma.configs import CONFIGS
from karmma.io import atomic_path, file_sha256
from karmma.models.weights import torchvision_weights, weights_location
from karmma.stages import stage_extractor_specs, teacher_modalities_without_weights
from karmma.train_config import TrainConfig, stage_spec

#: where docs/epic.md makes the files no one publishes
UNIMODAL_STEP = "docs/epic.md, step 3"
TEACHER_STEP = "docs/epic.md, step 4"


class WeightsDownloadError(OSError):
    """A download failed, was truncated or has another hash than torchvision publishes."""


@dataclass(frozen=True)
class WeightFile:
    """One weight file a config names."""

    setting: str  #: the config key that names it: "pretrained.V", "extractors.F", "teacher"
    weights: str  #: its value as the config writes it ("" where the teacher leaves a modality unset)
    path: Path | None  #: the file a run reads (None: not set)
    url: str = ""  #: torchvision's download address ("" when no one publishes the file)
    needed: bool = True  #: False: named but not read by a run (a student reading cached teacher logits)
    made_by: str = ""  #: how to get it when no one publishes it

    @property
    def hash_prefix(self) -> str:
        """The SHA-256 prefix torchvision publishes in the file name ("" when not published)."""
        return published_hash_prefix(self.url) if self.url else ""


def published_hash_prefix(url: str) -> str:
    """``.../swin3d_b_1k-24f7c7c6.pth`` -> ``"24f7c7c6"``: torch.hub's rule for ``check_hash``."""
    import torch.hub

    found = torch.hub.HASH_REGEX.search(os.path.basename(url))
    if not found or not found.group(1):
        raise WeightsDownloadError(f"{url}: the file name carries no published hash to check the download against")
    return found.group(1)


def config_display_name(path: str | Path) -> str:
    """A shipped config as ``configs/<dataset>/<stage>.yaml`` when ``./configs`` is the shipped
    folder (the repository root), else the path as given."""
    path = Path(path)
    try:
        inside = path.resolve().relative_to(CONFIGS.resolve())
    except ValueError:
        return str(path)
    return str(Path("configs") / inside) if Path("configs").resolve() == CONFIGS.resolve() else str(path)


def config_weight_files(config: TrainConfig, config_name: str) -> list[WeightFile]:
    """Every weight file a run of ``config`` reads, in the order the stage reads them.

    ``config_name`` is how the messages name the config (e.g. ``configs/epic100/teacher.yaml``).
    """
    files = []
    for key, spec in stage_extractor_specs(config).items():
        weights = getattr(spec.extractor, "weights", None)
        if weights is not None:
            member = torchvision_weights(weights, spec.extractor.weights_enum)
            made_by = "" if member else f"a local file karmma cannot fetch: put it at {weights}"
            path = weights_location(weights, spec.extractor.weights_enum)
            files.append(WeightFile(f"pretrained.{key}", weights, path, member.url if member else "", True, made_by))
        elif key in config.pretrained:  # a karmma .ckpt, read after building
            made_by = "a karmma run's checkpoint: train that run first"
            files.append(
                WeightFile(
                    f"pretrained.{key}", config.pretrained[key], _run_file(config.pretrained[key]), made_by=made_by
                )
            )
    spec = stage_spec(config.stage)
    if spec.frozen_extractors:
        for key, path in config.extractors.items():
            made_by = (
                f"no one publishes it (the teacher's {key} extractor): {_unimodal_command(config_name, key, path)}"
            )
            files.append(WeightFile(f"extractors.{key}", path, _run_file(path), made_by=made_by))
        for key in teacher_modalities_without_weights(config):
            files.append(
                WeightFile(
                    f"extractors.{key}",
                    "",
                    None,
                    made_by=f"not set: give extractors.{key}=<unimodal checkpoint> or pretrained.{key}=<weights> "
                    "(a run refuses a random frozen extractor)",
                )
            )
    if spec.distillation and config.teacher:
        teacher_config = Path(config_name).with_name("teacher.yaml")
        command = f"karmma train {teacher_config}" if teacher_config.is_file() else "a karmma teacher run"
        files.append(
            WeightFile(
                "teacher",
                config.teacher,
                _run_file(config.teacher),
                needed=config.teacher_logits == "live",
                made_by=f"the trained teacher: {command} ({TEACHER_STEP})",
            )
        )
    return files


def _run_file(path: str) -> Path:
    """A karmma checkpoint path as a run opens it (``read_checkpoint``: relative to the working folder, no ``~``)."""
    return Path(path).absolute()


def _unimodal_command(config_name: str, key: str, checkpoint: str) -> str:
    """The unimodal run that writes ``checkpoint`` (``<runs>/<name>/checkpoints/best.ckpt``)."""
    path = Path(checkpoint)
    run = ""
    if path.parent.name == "checkpoints":
        runs, name = path.parent.parent.parent, path.parent.parent.name
        run = f" trainer.name={name}" + ("" if runs == Path("runs") else f" trainer.runs={runs}")
    return f"karmma train {config_name} stage=unimodal unimodal_modality={key}{run} ... ({UNIMODAL_STEP})"


def file_status(file: WeightFile) -> tuple[str, str]:
    """``(status, sha256)`` of ``file`` on disk: present / missing / not set, and its SHA-256 when present."""
    if file.path is None:
        return "not set", ""
    if not file.path.is_file():
        return ("missing" if file.needed else "missing, not read"), ""
    sha256 = file_sha256(file.path)
    if file.url and not sha256.startswith(file.hash_prefix):
        return f"present, not torchvision's file (its SHA-256 should start {file.hash_prefix})", sha256
    return ("present" if file.needed else "present, not read"), sha256


def _absent(file: WeightFile) -> bool:
    """Not set, or not on disk (decided without reading, let alone hashing, the file)."""
    return file.path is None or not file.path.is_file()


def missing_files(files: Sequence[WeightFile]) -> list[WeightFile]:
    """The files a run reads (``needed``) that are not on disk or not set: the run would stop on them."""
    return [file for file in files if file.needed and _absent(file)]


def weights_table(configs: Sequence[tuple[str, list[WeightFile]]], overrides: Sequence[str] = ()) -> str:
    """The table ``karmma weights`` prints: per config, each file with its status, SHA-256 and
    path, then what to do about the missing ones (``overrides``: the command line's, repeated there)."""
    fetch_overrides = "".join(f" {shlex.quote(override)}" for override in overrides)
    lines = []
    for name, files in configs:
        lines.append(f"{name}")
        if not files:
            lines += ["  no weight files (every extractor starts from random weights)", ""]
            continue
        rows = [("setting", "weights", "status", "sha256", "file")]
        published, unpublished = [], []
        for file in files:
            status, sha256 = file_status(file)
            rows.append((file.setting, file.weights or "-", status, sha256 or "-", str(file.path or "-")))
        for file in missing_files(files):
            (published if file.url else unpublished).append(file)
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4] for row in rows]
        if published:
            settings = ", ".join(file.setting for file in published)
            lines.append(f"  {settings}: published by torchvision: karmma weights fetch {name}{fetch_overrides}")
        lines += [f"  {file.setting}: {file.made_by}" for file in unpublished] + [""]
    return "\n".join(lines).rstrip() + "\n"


def download_verified(url: str, destination: Path, hash_prefix: str, timeout: float = 60.0) -> str:
    """Download ``url`` to ``destination`` if its SHA-256 starts with ``hash_prefix``; returns the SHA-256.

    Streams to a temporary file beside ``destination`` and renames it only after the whole
    file (``Content-Length`` bytes, when the server says) arrived and the hash checks out;
    otherwise raises :class:`WeightsDownloadError` and leaves no file behind.
    """
    digest, received, expected = hashlib.sha256(), 0, None
    with atomic_path(destination) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                length = response.headers.get("Content-Length")
                expected = int(length) if length and length.isdigit() else None
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
        except http.client.IncompleteRead as error:
            received += len(error.partial)
        except urllib.error.HTTPError as error:
            raise WeightsDownloadError(f"{url}: HTTP {error.code} {error.reason}; nothing written") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", None) or error
            raise WeightsDownloadError(f"{url}: download failed ({reason}); nothing written") from None
        if expected is not None and received != expected:
            raise WeightsDownloadError(
                f"{url}: truncated download ({received} of {expected} bytes); nothing written to {destination}"
            )
        sha256 = digest.hexdigest()
        if not sha256.startswith(hash_prefix):
            raise WeightsDownloadError(
                f"{url}: SHA-256 {sha256[:16]}... does not start with the published {hash_prefix} "
                f"(corrupted, or not the published file); nothing written to {destination}"
            )
    return sha256


def fetch_weight_files(
    files: Sequence[WeightFile], base_url: str | None = None, report: Callable[[str], None] = print
) -> list[WeightFile]:
    """Download every needed, missing file that torchvision publishes (from ``base_url`` +
    its file name when given, else torchvision's address) and report each file's fate.

    Returns the needed files still missing that no one publishes, each with ``made_by``.
    """
    done: set[Path] = set()
    unpublished = []
    for file in files:
        if file.path in done or not file.needed:
            continue
        if not file.url:
            if _absent(file):
                unpublished.append(file)
            continue
        done.add(file.path)
        if file.path.is_file():
            status, sha256 = file_status(file)
            report(f"{file.setting} {file.weights}: {status} at {file.path} (sha256 {sha256})")
            continue
        url = f"{base_url.rstrip('/')}/{file.path.name}" if base_url else file.url
        report(f"{file.setting} {file.weights}: downloading {url}")
        sha256 = download_verified(url, file.path, file.hash_prefix)
        report(
            f"{file.setting} {file.weights}: fetched to {file.path} (sha256 {sha256}, starts with the published {file.hash_prefix})"
        )
    for file in unpublished:
        report(f"{file.setting} {file.weights or '(not set)'}: {file.made_by}")
    return unpublished
