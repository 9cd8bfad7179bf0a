"""The project's open_clip model configs (model_configs/*.json): registered before a model is built
by name, so a recipe or an evaluated model may name one."""

from __future__ import annotations

from pathlib import Path

MODEL_CONFIGS = Path(__file__).parent / "model_configs"


def register_model_configs() -> None:
    import open_clip  # heavy: only where a model is built

    open_clip.add_model_config(MODEL_CONFIGS)
