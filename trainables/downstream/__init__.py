"""Downstream zero-shot evaluation of a trained model through lm-evaluation-harness (the ``lm-eval``
extra): lossweep's GPT as a harness model (``lm``), a checkpoint loaded back into it (``checkpoint``),
the tasks that ship with lossweep and need no network (``local_tasks``), and one call that evaluates a
model on named tasks and returns accuracy with its standard error per task (``evaluate``).

Torch-side: it runs where a trial ran, in the trial's resources. Importing this package pulls in
neither torch nor lm_eval; the modules that need them import them.
"""
