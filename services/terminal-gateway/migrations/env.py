from shardz_common.migrations_env import run
from shardz_terminal.db.tables import metadata

run(metadata)
