"""zerosweep: benchmark DeepSpeed ZeRO configurations of Hugging Face fine-tuning on SLURM clusters."""

__version__ = "0.1.0"
