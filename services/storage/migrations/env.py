from shardz_common.migrations_env import run
from shardz_storage.db.tables import metadata

run(metadata)
