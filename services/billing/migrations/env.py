from shardz_billing.db.tables import metadata
from shardz_common.migrations_env import run

run(metadata)
