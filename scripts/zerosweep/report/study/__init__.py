"""A study's tables and plots: rows from run summaries, verdicts, derived columns."""
