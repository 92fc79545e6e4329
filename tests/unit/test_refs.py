"""The one reference grammar: name, name@version, name@latest, name@alias, name@hash-prefix."""

from __future__ import annotations

import pytest

from keel import InvalidInputError
from keel.refs import Ref, check_name, parse_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("credit", Ref("credit")),
        ("credit@latest", Ref("credit")),
        ("credit@3", Ref("credit", version=3)),
        ("credit@champion", Ref("credit", alias="champion")),
        ("  credit@3 ", Ref("credit", version=3)),
        ("credit-risk.v2_x@prod-eu", Ref("credit-risk.v2_x", alias="prod-eu")),
    ],
)
def test_parse_ref_reads_versions_latest_and_aliases(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected


def test_latest_and_bare_name_are_the_same_reference() -> None:
    assert parse_ref("credit").is_latest and parse_ref("credit@latest").is_latest
    assert not parse_ref("credit@3").is_latest


@pytest.mark.parametrize(
    ("text", "digest"),
    [
        ("credit@9f2c1a", "9f2c1a"),
        ("credit@sha256:9f2c1ab7", "9f2c1ab7"),
        ("credit@9F2C1AB7", "9f2c1ab7"),
        ("credit@sha256:123456", "123456"),
        ("credit@" + "a" * 64, "a" * 64),
    ],
)
def test_hash_prefix_is_a_digest_when_hashes_are_allowed(text: str, digest: str) -> None:
    assert parse_ref(text, hashes=True) == Ref("credit", digest=digest)


def test_hex_selector_is_an_alias_when_hashes_are_not_allowed() -> None:
    assert parse_ref("credit@9f2c1a") == Ref("credit", alias="9f2c1a")


def test_all_digit_selector_is_a_version_even_with_hashes() -> None:
    assert parse_ref("credit@123456", hashes=True) == Ref("credit", version=123456)


def test_sha256_selector_is_refused_for_models() -> None:
    with pytest.raises(InvalidInputError, match="only datasets"):
        parse_ref("credit@sha256:9f2c1ab7")


def test_too_short_hash_prefix_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="6 to 64 hex digits"):
        parse_ref("credit@sha256:9f2c", hashes=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Empty reference"),
        ("   ", "Empty reference"),
        ("credit@", "nothing after '@'"),
        ("credit@0", "start at 1"),
        ("credit@a@b", "is not a version"),
        ("credit@²", "is not a version"),
        ("credit@-x", "is not a version"),
        ("@3", "Invalid name"),
        ("cre dit@3", "Invalid name"),
        ("../etc@1", "Invalid name"),
        ("crédit", "Invalid name"),
    ],
)
def test_malformed_reference_raises_invalid_input_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_ref(text, hashes=True)


def test_non_string_reference_raises_invalid_input() -> None:
    with pytest.raises(InvalidInputError):
        parse_ref(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["credit", "a", "credit-risk_v2.1", "9lives", "x" * 128])
def test_check_name_accepts_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-credit", ".hidden", "a/b", "a b", "credit\n", "x" * 129, "a:b", None])
def test_check_name_refuses_invalid_names_and_says_what_is_allowed(name: str) -> None:
    with pytest.raises(InvalidInputError, match="letters, digits"):
        check_name(name, what="dataset name")


@pytest.mark.parametrize("text", ["credit@3", "credit@champion", "credit@9f2c1a", "credit@latest"])
def test_str_of_a_ref_parses_back_to_the_same_ref(text: str) -> None:
    ref = parse_ref(text, hashes=True)
    assert parse_ref(str(ref), hashes=True) == ref


@pytest.mark.parametrize("hashes", [False, True])
def test_version_above_int64_is_refused_naming_the_limit(hashes: bool) -> None:
    # Regression: 'credit@99999999999999999999' parsed to an int the database driver cannot bind
    # (OverflowError, a 500 over HTTP) instead of a clear input error.
    with pytest.raises(InvalidInputError, match="at most 9223372036854775807"):
        parse_ref("credit@99999999999999999999", hashes=hashes)
    with pytest.raises(InvalidInputError, match="at most"):
        parse_ref("credit@9223372036854775808")
    with pytest.raises(InvalidInputError, match="at most"):
        parse_ref("credit@" + "9" * 5000)  # more digits than int() parses by default


def test_largest_int64_version_and_leading_zeros_parse() -> None:
    assert parse_ref("credit@9223372036854775807") == Ref("credit", version=2**63 - 1)
    assert parse_ref("credit@" + "0" * 5000 + "7") == Ref("credit", version=7)
    with pytest.raises(InvalidInputError, match="versions start at 1"):
        parse_ref("credit@000")
