"""Stage 1, the config: errors, key schemas, registries, the group table, the run folder."""
