"""commit an upload in one round trip

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The end of every upload, as one server-side transaction script: one round trip instead
# of seven statements from the API process (the hot path of small PUTs). Lock order: the
# space's row first, like every other writer. A within_quota violation aborts it whole.
COMMIT_UPLOAD = """
CREATE OR REPLACE FUNCTION storage_commit_upload(
  p_reservation uuid, p_user uuid, p_key text, p_backend_key text, p_size bigint,
  p_etag text, p_content_type text, p_grace double precision
) RETURNS TABLE (outcome text, at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
  v_status text;
  v_held bigint;
  v_old_size bigint;
  v_old_key text;
  v_at timestamptz;
BEGIN
  SELECT status INTO v_status FROM spaces WHERE user_id = p_user FOR UPDATE;
  DELETE FROM reservations WHERE id = p_reservation RETURNING bytes INTO v_held;
  IF v_held IS NULL OR v_status IS NULL OR v_status = 'deleted' THEN
    -- the sweeper or the account's deletion took the reservation: what the upload wrote
    -- may have reached the store after their deletion ran
    INSERT INTO deletions (backend_key) VALUES (p_backend_key);
    RETURN QUERY SELECT 'gone'::text, NULL::timestamptz;
    RETURN;
  END IF;
  SELECT size, backend_key INTO v_old_size, v_old_key
    FROM objects WHERE user_id = p_user AND key = p_key FOR UPDATE;
  UPDATE spaces SET
    used_bytes = used_bytes + p_size - coalesce(v_old_size, 0),
    reserved_bytes = reserved_bytes - v_held,
    object_count = object_count + CASE WHEN v_old_key IS NULL THEN 1 ELSE 0 END,
    updated_at = now(),
    usage_changed_at = coalesce(usage_changed_at, now())
  WHERE user_id = p_user;
  INSERT INTO objects (user_id, key, backend_key, size, etag, content_type, version)
  VALUES (p_user, p_key, p_backend_key, p_size, p_etag, p_content_type, gen_random_uuid())
  ON CONFLICT (user_id, key) DO UPDATE SET
    backend_key = excluded.backend_key, size = excluded.size, etag = excluded.etag,
    content_type = excluded.content_type, version = excluded.version, updated_at = now()
  RETURNING objects.updated_at INTO v_at;
  IF v_old_key IS NOT NULL THEN
    INSERT INTO deletions (backend_key, not_before)
    VALUES (v_old_key, now() + make_interval(secs => p_grace));
  END IF;
  RETURN QUERY SELECT CASE WHEN v_old_key IS NULL THEN 'created' ELSE 'replaced' END, v_at;
END $$
"""


def upgrade() -> None:
    op.execute(COMMIT_UPLOAD)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION storage_commit_upload(uuid, uuid, text, text, bigint, text, text,"
        " double precision)"
    )
