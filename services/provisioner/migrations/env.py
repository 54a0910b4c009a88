from shardz_common.migrations_env import run
from shardz_provisioner.db.tables import metadata

run(metadata)
