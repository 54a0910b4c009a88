from __future__ import annotations

from shardz_common.errors import ProblemError


class PayloadTooLarge(ProblemError):
    status, code, title = 413, "payload_too_large", "Payload Too Large"
