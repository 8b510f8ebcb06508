"""MLflow's search grammar, parsed once for the REST API, the SDK and the dashboard."""

from __future__ import annotations

import pytest

from eventflow.search_filter import Clause, OrderBy, parse, parse_order_by
from eventflow.validation import InvalidInput


def test_every_entity_comparator_and_quoting_style():
    text = (
        "metrics.acc > 0.9 and params.lr = '0.01' AND tags.\"my key\" LIKE 'ml%' "
        "AND attributes.status IN ('FINISHED', 'FAILED') AND metrics.`val loss` <= 1e-3 "
        "AND metrics.val.loss < 2 AND tags.team ILIKE '%ML' AND attr.start_time >= 1700000000000 "
        "AND params.opt NOT IN ('sgd') AND run.run_name != \"x\""
    )
    assert parse(text) == [
        Clause("metrics", "acc", ">", 0.9),
        Clause("params", "lr", "=", "0.01"),
        Clause("tags", "my key", "LIKE", "ml%"),
        Clause("attributes", "status", "IN", ("FINISHED", "FAILED")),
        Clause("metrics", "val loss", "<=", 0.001),
        Clause("metrics", "val.loss", "<", 2.0),
        Clause("tags", "team", "ILIKE", "%ML"),
        Clause("attributes", "start_time", ">=", 1.7e12),
        Clause("params", "opt", "NOT IN", ("sgd",)),
        Clause("attributes", "run_name", "!=", "x"),
    ]
    assert parse("") == [] and parse(None) == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("metrics.acc > 'x'", "Expected numeric value"),
        ("params.lr > '1'", "Invalid comparator '>'"),
        ("foo.bar = '1'", "Invalid entity type 'foo'"),
        ("metrics.a > 1 OR metrics.b < 2", "OR is not supported"),
        ("acc > 1", "must be <entity>.<key>"),
        ("attributes.nope = 'x'", "Invalid attribute key 'nope'"),
        ("tags.t = x", "enclosed in quotes"),
        ("tags.t IN 'a'", "IN takes a list"),
        ("metrics.acc >", "ends too early"),
        ("metrics.acc ~ 1", "cannot parse"),
    ],
)
def test_a_bad_filter_says_what_is_wrong(text, message):
    with pytest.raises(InvalidInput, match=message):
        parse(text)


def test_order_by():
    assert parse_order_by("metrics.acc DESC") == OrderBy("metrics", "acc", False)
    assert parse_order_by("start_time") == OrderBy("attributes", "start_time", True)
    assert parse_order_by("params.`lr` ASC") == OrderBy("params", "lr", True)
    with pytest.raises(InvalidInput, match="Invalid order_by"):
        parse_order_by("nonsense here")


def test_a_filter_over_the_length_limit_is_refused_without_being_parsed():
    from eventflow import search_filter

    with pytest.raises(InvalidInput, match=f"at most {search_filter.MAX_LENGTH}"):
        parse("a" * 1_000_000)
    at_limit = " AND ".join(["metrics.m > 0"] * 2000)
    assert len(at_limit) <= search_filter.MAX_LENGTH and len(parse(at_limit)) == 2000


def test_the_tokenizer_is_linear(monkeypatch):
    """1 MB of tokens took 52 s with a copy of the rest of the text per token; one pass takes well under a second."""
    import time

    from eventflow import search_filter

    monkeypatch.setattr(search_filter, "MAX_LENGTH", 10**7, raising=False)
    text = "metrics.m > 0 AND " * 58_000 + "metrics.m > 0"
    assert len(text) > 1_000_000
    started = time.process_time()
    tokens = search_filter._tokens(text)
    assert len(tokens) == 58_001 * 5 + 58_000  # identifier (word . word), comparator, number; AND between
    assert time.process_time() - started < 5
