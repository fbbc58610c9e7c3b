"""Run records: every pass leaves one line in `.devloop/runs.jsonl` (store), written by the
recorder the SessionHost subscribes (record); JUnit XML and a GitHub step summary render a
record for CI (junit, step_summary)."""
