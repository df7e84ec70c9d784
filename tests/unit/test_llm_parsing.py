"""The pure pieces of LLM re-extraction and judging (no server): reply parsing, verdicts,
credential-free URLs. The mechanism against a real server is tests/server/test_reextract_real.py."""

from atts.analysis.judge import parse_verdict
from atts.analysis.llm import safe_url
from atts.analysis.reextract import parse_reply


def test_parse_reply_and_verdict():
    assert parse_reply(" $\\frac{1}{2}$. ") == "\\frac{1}{2}"
    assert parse_reply("so \\boxed{42}") == "42"
    assert parse_reply("NONE") is None and parse_reply("") is None
    assert parse_verdict("YES.") is True and parse_verdict("no") is False
    assert parse_verdict("yes and no") is None and parse_verdict("3444 *") is None


def test_safe_url_drops_credentials():
    assert safe_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert safe_url("https://user:sk-secret@host.example/v1?key=sk-secret") == "https://host.example/v1"
    assert safe_url(None) is None
