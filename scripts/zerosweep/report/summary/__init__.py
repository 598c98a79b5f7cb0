"""summary.md: the workshop's questions answered from the study tables."""
