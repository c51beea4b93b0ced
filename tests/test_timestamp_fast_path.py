"""Canonical timestamps (as ``evt read`` prints them) take a fast path on import: same result."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evt.errors import InvalidInput
from evt.log.timestamps import normalize_timestamp


@given(st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc)))
def test_a_canonical_timestamp_comes_back_unchanged(moment):
    canonical = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert normalize_timestamp(canonical) == canonical
    offset = moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    assert normalize_timestamp(offset) == canonical


@pytest.mark.parametrize("text", ["2026-13-01T00:00:00.000000Z", "2026-02-30T10:00:00.000000Z", "2026-11-28T24:00:00.000000Z"])
def test_a_canonical_looking_but_impossible_timestamp_is_refused(text):
    with pytest.raises(InvalidInput, match="is not RFC 3339"):
        normalize_timestamp(text)
