"""The embedded AWS (moto, DuckDB, the project's S3 Batch engine) and the commands that stand it up:
`local run`, `local inventory`, `local serve`, `preview`."""
