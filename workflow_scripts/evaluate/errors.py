"""The evaluation stage's error, apart from the modules that raise it (stage.py imports zeroshot.py,
and torch with it, only when a model runs)."""

from workflow_scripts.common.cli import StageError


class EvaluateError(StageError):
    """A benchmark or a setting evaluation cannot work with; the message says what to change."""
