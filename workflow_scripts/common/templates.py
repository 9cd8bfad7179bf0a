"""The prompts every zero-shot classifier is built from, each a function of the class name:
OpenAI's 80 ImageNet templates, as the paper evaluates (evaluate.zeroshot); the clip_benchmark
export writes them out, so that its runner prompts as we do.

They are open_clip's (open_clip/zero_shot_metadata.py, a file of data alone), read from that file
without importing open_clip: its package brings torch and transformers, about 10 s of CPU that the
clip_benchmark export would spend for 80 strings.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _open_clip_templates() -> tuple:
    package = importlib.util.find_spec("open_clip")  # found, not imported
    source = Path(package.submodule_search_locations[0]) / "zero_shot_metadata.py"
    spec = importlib.util.spec_from_file_location("_open_clip_zero_shot_metadata", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.OPENAI_IMAGENET_TEMPLATES


TEMPLATES = _open_clip_templates()
