"""Pure parts of the terminal: JSON values, psql-style text, messages, meta-command policy."""

from __future__ import annotations

import json

import pytest

from shardz_terminal.domain import protocol
from shardz_terminal.domain.render import aligned, bytea_hex, expanded, to_json
from shardz_terminal.services.metacommands import command_of, refusal


def test_values_follow_the_contract() -> None:
    assert to_json(23, b"42") == 42
    assert to_json(20, b"-9007199254740993") == -9007199254740993
    assert to_json(1700, b"1.50") == "1.50"  # numeric keeps its digits, as a string
    assert to_json(701, b"NaN") == "NaN" and to_json(701, b"0.5") == 0.5
    assert to_json(16, b"t") is True and to_json(16, b"f") is False
    assert to_json(17, b"\\x00ff") == "\\x00ff"
    assert to_json(25, None) is None
    assert to_json(3802, b'{"a": 1}') == '{"a": 1}'


def test_bytea_is_hex_whatever_bytea_output_the_session_chose() -> None:
    assert bytea_hex(b"\\000\\377a") == "\\x00ff61"


def test_aligned_text_looks_like_psql() -> None:
    text, cut = aligned(["n", "name"], [23, 25], [[1, "one"], [10, None]], 2, 10_000)
    assert not cut
    assert text.splitlines() == [
        " n  | name",  # psql centres a header, the odd space on the right
        "----+------",
        "  1 | one",
        " 10 |",
        "(2 rows)",
    ]


def test_text_is_cut_at_its_budget_and_long_cells_do_not_pad_every_line() -> None:
    rows = [[i, "x" * 50] for i in range(1000)]
    text, cut = aligned(["i", "x"], [23, 25], rows, 1000, 2000)
    assert cut and len(text) < 2200 and "(output cut)" in text
    huge = [["y" * 100_000]] + [["a"]] * 10
    text, _ = aligned(["v"], [25], huge, 11, 10**9)
    assert max(len(line) for line in text.splitlines()) < 1100


def test_expanded_text_has_one_block_per_record() -> None:
    text, _ = expanded(["a", "bb"], [[1, "x"], [2, None]], 2, 10_000)
    assert "-[ RECORD 1 ]" in text and "a  | 1" in text and "-[ RECORD 2 ]" in text


def test_messages_are_parsed_strictly() -> None:
    assert protocol.parse('{"type": "query", "id": "q1", "sql": "select 1"}').sql == "select 1"
    assert protocol.parse('{"type": "cancel", "id": 3}').id == 3
    for bad in ("nope", "[]", '{"type": "query"}', '{"type": "query", "sql": 1}', '{"type": "x"}'):
        with pytest.raises(protocol.BadMessage):
            protocol.parse(bad)


def test_no_server_message_passes_16_mib() -> None:
    rows = [["x" * 1000] for _ in range(40_000)]  # about 40 MB as JSON
    message = {"type": "result", "rows": rows, "text": "t" * 5_000_000, "truncated": False}
    out = protocol.fit(message)
    assert len(out.encode()) <= protocol.MAX_SERVER_MESSAGE
    assert json.loads(out)["truncated"] is True


@pytest.mark.parametrize(
    "text",
    ["\\!", "\\! ls", "\\copy t to 'f'", "\\i f", "\\ir f", "\\o f", "\\w f", "\\g f", "\\e",
     "\\lo_import f", "\\lo_export 1 f", "\\lo_anything", "\\set x `id`", "\\cd /", "\\s f"],
)  # fmt: skip
def test_escapes_to_files_or_a_shell_are_refused(text: str) -> None:
    reason = refusal(text)
    assert reason is not None and "refused" in reason


@pytest.mark.parametrize("text", ["\\dt", "\\dt+ x.*", "\\d t", "\\dfS", "\\l", "\\x", "\\?"])
def test_listings_run(text: str) -> None:
    assert refusal(text) is None


def test_backticks_are_refused_even_in_an_allowed_command() -> None:
    assert refusal("\\dt `touch f`") is not None
    assert command_of("\\dt+") == "\\dt"
