"""Shipped stage configs (YAML), also reachable as ``configs/`` at the repository root."""

from pathlib import Path

CONFIGS = Path(__file__).parent


def shipped_configs() -> list[Path]:
    """Every shipped stage config, ``<dataset>/<stage>.yaml``, sorted."""
    return sorted(CONFIGS.glob("*/*.yaml"))


def config_path(dataset: str, stage: str) -> Path:
    """``config_path("synthkitchen", "student")`` -> the shipped YAML file."""
    path = CONFIGS / dataset / f"{stage}.yaml"
    if not path.is_file():
        shipped = [p.parent.name + "/" + p.stem for p in shipped_configs()]
        raise FileNotFoundError(f"no shipped config {dataset}/{stage}; shipped: {', '.join(shipped)}")
    return path
