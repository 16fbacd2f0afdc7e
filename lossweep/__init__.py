"""lossweep: sweeps over LLM-pretraining loss regularizers on Ray."""

__version__ = "0.1.0"
