"""Supervised fine-tuning data for causal LMs: JSONL formats, agent traces and Python code,
streamed, tokenized once (cached by content), packed into fixed-length rows."""

from forge.data.sft.task import SFT

__all__ = ["SFT"]
