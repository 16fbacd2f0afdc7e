"""The one error of downstream evaluation that is the user's to fix."""

from __future__ import annotations


class EvalError(ValueError):
    """Bad input to an evaluation (unknown task, a task that needs an unreachable network, a checkpoint
    that does not fit its model, lm-eval not installed): the message is one line naming the problem."""


LM_EVAL_MISSING = "lm-evaluation-harness is not installed; install the extra: pip install 'lossweep[lm-eval]'"


def require_lm_eval() -> None:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise EvalError(LM_EVAL_MISSING) from None
