"""The tune study: its points, the micro-batch search and the memory model that seeds it."""
