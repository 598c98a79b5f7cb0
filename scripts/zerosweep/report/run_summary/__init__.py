"""One run's summary: monitor logs -> peaks, modes, clocks, throughput (summary.json)."""
