"""One line per error of a command, and whether it is an expected failure or a bug in karmma."""

from __future__ import annotations

import errno

#: What ``pip install '.[train]'`` adds to the light install (pyproject.toml): a command that
#: imports one of these in the light install is told to install the full package.
TRAINING_PACKAGES = (
    "torch",
    "torchvision",
    "lightning",
    "safetensors",
    "h5py",
    "matplotlib",
    "tqdm",
    "tensorboard",
    "onnx",
    "onnxscript",
)
FULL_INSTALL = "make setup, or pip install '.[train]' in the repository"


def describe_error(error: BaseException) -> tuple[str, bool]:
    """One line for an error, and whether it is an expected failure (bad input, I/O, device).

    Expected: bad configs / arguments / annotations / checkpoints (``ValueError``s),
    unreadable media, I/O errors (a missing file, a full or read-only disk), an
    unavailable device or out of memory, a command run in the light install that
    needs the full one. Anything else is a bug in karmma."""
    from karmma.data.media import MediaError

    name = type(error).__name__
    if isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] in TRAINING_PACKAGES:
        return (
            f"this needs the full install ({error.name} is not installed; the light install runs "
            f"'karmma predict' on ONNX exports only): {FULL_INSTALL}",
            True,
        )
    if isinstance(error, OSError) and error.errno is not None and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        hint = {
            errno.ENOSPC: "free disk space or write somewhere else",
            errno.EDQUOT: "disk quota exceeded: free space or write somewhere else",
            errno.EROFS: "the file system is read-only: choose a writable output folder",
            errno.EACCES: "permission denied: choose a folder you can write to (or fix its permissions)",
            errno.EPERM: "operation not permitted: choose a folder you can write to",
            errno.ENOENT: "check the path",
            errno.ENOTDIR: "a path component is a file, not a folder",
            errno.EISDIR: "a folder where a file was expected",
        }.get(error.errno, "")
        message = f"{where}{error.strerror}" + (f" ({hint})" if hint else "")
        return message, True
    message = str(error)
    if "Original Traceback" in message:  # re-raised from a DataLoader worker: keep the last line
        message = [line for line in message.splitlines() if line.strip()][-1].strip()
    message = " ".join(message.split()) or name
    if name == "OutOfMemoryError":
        return f"out of memory ({message[:200]}): use a smaller optim.batch_size / --batch-size", True
    if name == "MisconfigurationException":  # Lightning: e.g. trainer.accelerator=gpu without a GPU
        return f"{message} (check the trainer.* settings)", True
    expected = isinstance(error, (ValueError, OSError, MediaError))
    return message, expected
