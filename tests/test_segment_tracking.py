"""Tracked segments on the embedded store: incremental refreshes equal full recomputation, entries and exits
as events, scenarios started by them, grade changes, and the errors."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import shopcrm
from engines.loaders import duckdb_shop
from membership_streams import Stream, check, streams


def _append(shop: shopcrm.Shop, events: list[dict[str, Any]]) -> None:
    shop.load_events(events)


def _edit(shop: shopcrm.Shop, customers: list[dict[str, Any]]) -> None:
    shop.load_customers(customers)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
@given(streams(edits=True))
def test_incremental_refresh_equals_full_recomputation(stream: Stream) -> None:
    check(duckdb_shop, stream, _append, _edit)
