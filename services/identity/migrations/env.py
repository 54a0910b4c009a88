from shardz_common.migrations_env import run
from shardz_identity.db.tables import metadata

run(metadata)
