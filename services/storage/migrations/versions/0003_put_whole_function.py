"""store a small object in one transaction

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# A small body (Content-Length up to STORAGE_WHOLE_BODY_MAX_BYTES) is already in the store
# when this runs: the quota check, the usage, the index row and the replaced object's deletion
# intent are one transaction, one round trip, instead of a reservation before and a commit
# after (ADR 0010, storage data path). A refused body becomes a deletion intent in the same transaction. Lock
# order: the space's row first, like every other writer.
PUT_WHOLE = """
CREATE OR REPLACE FUNCTION storage_put_whole(
  p_user uuid, p_key text, p_backend_key text, p_size bigint, p_etag text,
  p_content_type text, p_grace double precision
) RETURNS TABLE (outcome text, at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
  v_status text;
  v_free bigint;
  v_old_size bigint;
  v_old_key text;
  v_at timestamptz;
BEGIN
  SELECT status, quota_bytes - used_bytes - reserved_bytes INTO v_status, v_free
    FROM spaces WHERE user_id = p_user FOR UPDATE;
  IF v_status IS NULL THEN
    -- no space yet: the caller creates it and calls again with the same object
    RETURN QUERY SELECT 'absent'::text, NULL::timestamptz;
    RETURN;
  END IF;
  SELECT size, backend_key INTO v_old_size, v_old_key
    FROM objects WHERE user_id = p_user AND key = p_key FOR UPDATE;
  IF v_status <> 'active' OR p_size - coalesce(v_old_size, 0) > v_free THEN
    INSERT INTO deletions (backend_key) VALUES (p_backend_key);
    RETURN QUERY SELECT CASE WHEN v_status = 'active' THEN 'quota' ELSE v_status END,
      NULL::timestamptz;
    RETURN;
  END IF;
  UPDATE spaces SET
    used_bytes = used_bytes + p_size - coalesce(v_old_size, 0),
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
    op.execute(PUT_WHOLE)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION storage_put_whole(uuid, text, text, bigint, text, text,"
        " double precision)"
    )
