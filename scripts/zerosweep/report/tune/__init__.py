"""A tune study's records, recommendation per budget, memory-model report and plots."""
