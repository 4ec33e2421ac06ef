"""Config helpers: the resolvers the YAML files use, registered once on import."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

# src/lstm_sentiment/config.py -> the project root (an editable install keeps this true)
PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = str(PROJECT_ROOT / "conf")


def first_existing(*paths: str) -> str:
    """The first folder that exists, else the first one named (so errors name where to put it)."""
    for path in paths:
        if Path(path).is_dir():
            return str(path)
    return str(paths[0])


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("first_existing"):
        OmegaConf.register_new_resolver("first_existing", first_existing)


register_resolvers()
