"""Defaults shared by the pipeline's steps and the CLI, each defined once."""

#: Images generated and described per batch (results never depend on it).
BATCH_SIZE = 64
#: Collection samples per statistics tile (results never depend on it).
CHUNK_SIZE = 4096
#: Collection samples per checkpointed shard of a run directory.
SHARD_SIZE = 16_384
