"""The `batchpipe` command: its front door (cli), the operator's commands against any stack (ops), the
embedded AWS and its commands (local), and the floor they share (inputs, outcome, progress, spec_schema)."""
