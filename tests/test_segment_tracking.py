"""Tracked segments on the embedded store: incremental refreshes equal full recomputation, entries and exits
as events, scenarios started by them, grade changes, and the errors."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shopcrm
from engines.loaders import duckdb_shop
from membership_streams import Stream, _timed, check, streams
from races import at_once, once_claimed
from shopcrm.dsl import parse_rule
from shopcrm.errors import RuleError
from shopcrm.reference import evaluate
from shopcrm.segment_tracking import _horizons
from strategies import rules

#: the shop's checks warn that no segment_entered / grade_changed event was seen yet: true before the first refresh
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _append(shop: shopcrm.Shop, events: list[dict[str, Any]]) -> None:
    shop.load_events(events)


def _edit(shop: shopcrm.Shop, customers: list[dict[str, Any]]) -> None:
    shop.load_customers(customers)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
@given(streams(edits=True))
def test_incremental_refresh_equals_full_recomputation(stream: Stream) -> None:
    check(duckdb_shop, stream, _append, _edit)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
@given(streams(edits=True), st.lists(st.sampled_from([timedelta(0), timedelta(microseconds=1), timedelta(minutes=5),
                                                      timedelta(days=3), timedelta(days=400)]), max_size=5))
def test_a_refresh_before_the_last_one_is_skipped_and_changes_nothing(stream: Stream, back: list[timedelta]) -> None:
    # a clock that goes back between refreshes: the refreshes after it still equal full recomputation
    check(duckdb_shop, stream, _append, _edit, back=back)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
@given(streams(edits=True, late=True))
def test_events_arriving_late_on_the_embedded_store_are_counted_by_the_next_refresh(stream: Stream) -> None:
    check(duckdb_shop, stream, _append, _edit)


def test_a_late_order_enters_its_customer_at_the_next_incremental_refresh() -> None:
    shop = _vip_shop()
    shop.track_segment("vip")
    shop.refresh_segments(now=T0)
    shop.refresh_segments(now=T0 + timedelta(hours=1))
    # an order placed at 09:30 reaches the shop only after the 10:00 refresh (a batch from a slow pipeline)
    shop.load_events([{"customer_id": 3, "event": "order_completed", "ts": T0 + timedelta(minutes=30), "amount": 300}])
    assert shop.source.membership_store().tracked()["segment:vip"]["since"] == "2026-03-01 09:30:00.000000"
    later = shop.refresh_segments(now=T0 + timedelta(hours=2))
    assert later["vip"].entered == (3,)
    assert later["vip"].full is None  # incremental: the late order's customer is a candidate
    assert later["vip"].candidates == 1
    assert "since" not in shop.source.membership_store().tracked()["segment:vip"]
    # an event at or after the last refresh is not late: nothing is rewound
    shop.load_events([{"customer_id": 4, "event": "order_completed", "ts": T0 + timedelta(hours=2), "amount": 1}])
    assert "since" not in shop.source.membership_store().tracked()["segment:vip"]


def test_a_shop_that_tracks_nothing_gets_no_library_tables_from_loads() -> None:
    shop = shopcrm.Shop.open(":memory:")
    shop.load_customers([{"customer_id": 1, "name": "고객"}])
    shop.load_events([{"customer_id": 1, "event": "order_completed", "ts": T0}])
    shop.load_events([{"customer_id": 1, "event": "order_completed", "ts": T0 - timedelta(days=400)}])
    assert not shop.source.library.has_table("tracked")


def test_a_clock_gone_back_keeps_every_stay_and_writes_no_event() -> None:
    shop = _vip_shop()
    shop.track_segment("vip")
    shop.track_segment("buyers")
    shop.refresh_segments(now=T0)
    shop.load_events([{"customer_id": 2, "event": "order_completed", "ts": T0 + timedelta(minutes=10), "amount": 150}])
    later = shop.refresh_segments(now=T0 + timedelta(hours=1))
    assert later["vip"].entered == (2,)
    assert later["buyers"].entered == (2,)
    stays = shop.segment_stays("vip")
    events = shop.source.con.execute("SELECT count(*) FROM events").fetchone()
    # at 09:05 customer 2's order (09:10) had not happened: recomputed then, the stay that began at 10:00 would end
    # at 09:05; instead each segment is left as it is and says why
    back = shop.refresh_segments(now=T0 + timedelta(minutes=5))
    assert [c.segment for c in back.segments] == ["buyers", "vip"]  # in the order refreshes list them
    assert back["vip"].skipped == "now (2026-03-01 09:05:00 UTC) is before its last refresh (2026-03-01 10:00:00 UTC)"
    assert (back["vip"].entered, back["vip"].exited, back["vip"].members, back.events) == ((), (), 1, 0)
    assert "vip: skipped, now (2026-03-01 09:05:00 UTC) is before its last refresh" in str(back)
    assert shop.segment_stays("vip") == stays
    assert shop.source.con.execute("SELECT count(*) FROM events").fetchone() == events
    # a segment tracked since is refreshed at the earlier instant (it has no later refresh); the others wait
    shop.save_segment("silver", {"attribute": "grade", "eq": "silver"})
    shop.track_segment("silver")
    mixed = shop.refresh_segments(now=T0 + timedelta(minutes=6))
    assert mixed["vip"].skipped
    assert mixed["buyers"].skipped
    assert not mixed["silver"].skipped
    assert mixed["silver"].initial
    assert mixed["silver"].members == 4
    # once the clock passes the last refresh, the refreshes go on from it
    shop.load_events([{"customer_id": 3, "event": "order_completed", "ts": T0 + timedelta(minutes=70), "amount": 200}])
    on = shop.refresh_segments(now=T0 + timedelta(hours=2))
    assert on["vip"].entered == (3,)
    assert on["vip"].exited == ()
    assert not on["vip"].skipped
    # (in full once: the skipped refresh kept the fingerprint of the columns tracked before "silver" read grade)
    assert on["vip"].full == "the customers table changed"
    assert shop.segment_stays("vip")[-1].entered_at == T0 + timedelta(hours=2)


T0 = datetime(2026, 3, 1, 9)


def _vip_shop() -> shopcrm.Shop:
    shop = shopcrm.Shop.open(path=":memory:")
    shop.load_customers([{"customer_id": i, "name": f"고객{i}", "grade": "silver", "phone": f"0101234000{i}",
                          "sms_opt_in": True} for i in range(1, 5)])
    shop.load_events([{"customer_id": 1, "event": "order_completed", "ts": T0 - timedelta(days=1), "amount": 10}])
    shop.save_segment("vip", {"aggregate": "sum", "of": "amount", "performed": "order_completed",
                              "within": {"last": "30d"}, "gte": 100})
    shop.save_segment("buyers", {"performed": "order_completed", "within": {"last": "30d"}})
    return shop


def _scenario(where: dict[str, Any] | None) -> dict[str, Any]:
    schedule: dict[str, Any] = {"kind": "triggered", "on": "segment_entered", "reentry": "every_time",
                                "steps": [{"send": "hello"}]}
    if where is not None:
        schedule["where"] = where
    return {"id": "vip_welcome", "purpose": "informational", "channels": ["sms"],
            "variants": [{"name": "a", "content": {"text": "{{ name }}님, VIP가 되셨습니다"}}], "schedule": schedule}


def test_entering_vip_starts_the_scenario_and_entering_another_segment_does_not() -> None:
    shop = _vip_shop()
    shop.track_segment("vip", now=T0)
    shop.track_segment("buyers", now=T0)
    shop.save_campaign(_scenario({"segment": "vip"}), now=T0)
    first = shop.tick(now=T0)  # the first refresh records members silently
    assert first.messages == ()
    shop.load_events([{"customer_id": 2, "event": "order_completed", "ts": T0 + timedelta(minutes=5), "amount": 150},
                      {"customer_id": 3, "event": "order_completed", "ts": T0 + timedelta(minutes=6), "amount": 5}])
    second = shop.tick(now=T0 + timedelta(hours=1))
    assert [m.customer_id for m in second.messages] == [2]  # 3 entered buyers only
    refreshed = shop.refresh_segments(now=T0 + timedelta(hours=2))
    assert refreshed["vip"].entered == ()
    assert refreshed["buyers"].entered == ()
    assert "vip" in str(refreshed)


def test_without_where_every_segment_entry_starts_it() -> None:
    shop = _vip_shop()
    shop.track_segment("vip", now=T0)
    shop.track_segment("buyers", now=T0)
    shop.save_campaign(_scenario(None), now=T0)
    shop.tick(now=T0)
    shop.load_events([{"customer_id": 2, "event": "order_completed", "ts": T0 + timedelta(minutes=5), "amount": 150},
                      {"customer_id": 3, "event": "order_completed", "ts": T0 + timedelta(minutes=6), "amount": 5}])
    assert sorted(m.customer_id for m in shop.tick(now=T0 + timedelta(hours=1)).messages) == [2, 3]


def test_leaving_a_segment_is_an_event_at_its_boundary_without_new_events() -> None:
    shop = _vip_shop()
    shop.track_segment("buyers", now=T0)
    shop.refresh_segments(now=T0)
    assert shop.source.membership_store().next_changes("buyers") == {1: T0 - timedelta(days=1) + timedelta(days=30)}
    assert shop.refresh_segments(now=T0 + timedelta(days=29) - timedelta(seconds=1))["buyers"].exited == ()
    left = shop.refresh_segments(now=T0 + timedelta(days=29))["buyers"]
    assert left.exited == (1,)
    assert left.candidates == 1
    stays = shop.segment_stays("buyers")
    assert [(s.customer_id, s.entered_at, s.exited_at) for s in stays] == [(1, T0, T0 + timedelta(days=29))]


@pytest.mark.parametrize(("where", "message"), [
    ({}, "non-empty mapping"),
    ({"segment": ["vip"]}, "one text, number or true/false"),
    ({"seg ment": "vip"}, "not an event property name"),
])
def test_where_errors_say_what_is_right(where: Any, message: str) -> None:
    from shopcrm.errors import CampaignError

    with pytest.raises((CampaignError, ValueError), match=message):
        shopcrm.campaigns.parse_campaign(_scenario(where))


def test_grade_changes_between_refreshes_are_events_the_playbook_sends_on() -> None:
    shop = _vip_shop()
    shop.track_attribute("grade", now=T0)
    shop.enable_playbook("grade_changed", now=T0)
    assert shop.tick(now=T0).messages == ()  # the first refresh records the grades
    shop.load_customers([{"customer_id": 2, "name": "고객2", "grade": "gold", "phone": "01012340002", "sms_opt_in": True}])
    result = shop.refresh_segments(now=T0 + timedelta(hours=1))
    assert result.attributes[0].changed == ((2, "silver", "gold"),)
    assert shop.refresh_segments(now=T0 + timedelta(hours=2)).attributes[0].skipped
    planned = shop.tick(now=T0 + timedelta(hours=2))
    assert [m.customer_id for m in planned.messages] == [2]
    assert "gold" in planned.messages[0].chain[0].text
    assert "silver" in planned.messages[0].chain[0].text


def test_a_clock_gone_back_leaves_a_tracked_attribute_as_it_was_seen_last() -> None:
    shop = _vip_shop()
    shop.track_attribute("grade", now=T0)
    shop.refresh_segments(now=T0)
    shop.load_customers([{"customer_id": 2, "name": "고객2", "grade": "gold", "phone": "01012340002", "sms_opt_in": True}])
    assert shop.refresh_segments(now=T0 + timedelta(hours=1)).attributes[0].changed == ((2, "silver", "gold"),)
    events = shop.source.con.execute("SELECT count(*) FROM events WHERE event = 'grade_changed'").fetchone()
    # customer 3 changes grade; at 09:30 the refresh at 10:00 had seen them silver, so a change stamped 09:30 would
    # come before the look that still saw the old grade: nothing is read or written, and the refresh says why
    shop.load_customers([{"customer_id": 3, "name": "고객3", "grade": "vip", "phone": "01012340003", "sms_opt_in": True}])
    back = shop.refresh_segments(now=T0 + timedelta(minutes=30))
    assert back.attributes[0].skipped
    assert back.attributes[0].reason == "now (2026-03-01 09:30:00 UTC) is before its last refresh (2026-03-01 10:00:00 UTC)"
    assert (back.attributes[0].changed, back.events) == ((), 0)
    assert "grade: skipped, now (2026-03-01 09:30:00 UTC) is before its last refresh" in str(back)
    assert shop.source.con.execute("SELECT count(*) FROM events WHERE event = 'grade_changed'").fetchone() == events
    # the next refresh after the last look finds the change, stamped then
    on = shop.refresh_segments(now=T0 + timedelta(hours=2))
    assert on.attributes[0].changed == ((3, "silver", "vip"),)
    assert shop.source.con.execute("SELECT customer_id, ts FROM events WHERE event = 'grade_changed' ORDER BY ts").fetchall() == [
        (2, T0 + timedelta(hours=1)), (3, T0 + timedelta(hours=2))]


def test_clear_errors() -> None:
    shop = _vip_shop()
    with pytest.raises(KeyError, match="no segment named 'nope'"):
        shop.track_segment("nope")
    with pytest.raises(KeyError, match="is not tracked"):
        shop.untrack_segment("vip")
    with pytest.raises(KeyError, match="has no column 'tier'"):
        shop.track_attribute("tier")
    shop.track_segment("vip")
    with pytest.raises(RuleError, match=r"is tracked; stop tracking it first with shop.untrack_segment\('vip'\)"):
        shop.delete_segment("vip")  # a tick would otherwise refresh a segment that no longer exists
    shop.source.segment_store().delete("vip")  # deleted behind the shop's back: the refresh says what to do
    with pytest.raises(KeyError, match="untrack_segment"):
        shop.refresh_segments(now=T0)
    shop.untrack_segment("vip")
    assert shop.tracked_segments() == []


def test_population_relative_rules_are_recomputed_in_full() -> None:
    shop = _vip_shop()
    shop.save_segment("champions", {"rfm": "champions"})
    shop.track_segment("champions")
    shop.refresh_segments(now=T0)
    assert "whole shop" in (shop.refresh_segments(now=T0 + timedelta(hours=1))["champions"].full or "")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
@given(streams())
def test_compiled_next_change_equals_the_pure_reference(stream: Stream) -> None:
    """``compile_next_changes`` on DuckDB gives every customer the instant ``next_change_at`` computes in Python."""
    from shopcrm.compiler._boundaries import compile_next_changes, next_changes_from_rows
    from shopcrm.dsl._boundaries import boundaries, next_change_at

    found = boundaries(stream.rule)
    if found.full is not None:
        return
    shop = duckdb_shop(stream.shop)
    for now in stream.times:
        queries = compile_next_changes(found, shop.source.schema(), now=now, dialect="duckdb")
        compiled = next_changes_from_rows([(shop.source.fetch(q), offsets) for q, offsets in queries], now=now)
        expected = {}
        for person in stream.shop.customers:
            mine = [e for e in stream.shop.events if e["customer_id"] == person["customer_id"]]
            at = next_change_at(found, person, mine, now=now)
            if at is not None:
                expected[person["customer_id"]] = at
        known = {c["customer_id"] for c in stream.shop.customers}  # events of strangers have instants too: not asked
        assert {k: v for k, v in compiled.items() if k in known} == expected


def test_boundaries_of_a_rule() -> None:
    from shopcrm.dsl import parse_rule
    from shopcrm.dsl._boundaries import Boundary, boundaries

    found = boundaries(parse_rule({"and": [
        {"performed": "order_completed", "within": {"last": "30d"}},
        {"not": {"attribute": "signed_up_at", "ago": {"lt": "7d"}}},
        {"rfm": "champions"},
    ]}))
    assert found.items == (
        Boundary("customers", "signed_up_at", None, (timedelta(0), timedelta(days=7))),
        Boundary("events", "ts", "order_completed", (timedelta(0), timedelta(days=30))),
    )
    assert found.full is not None
    assert "rfm" in found.full
    assert boundaries(parse_rule({"attribute": "grade", "eq": "gold"})).static


def test_a_scenario_on_a_tracked_segment_is_not_warned_about_as_never_seen() -> None:
    """Before the first refresh writes one, segment_entered occurs nowhere in the events table; a shop that tracks
    segments writes it, so saving a scenario on it warns only while nothing is tracked (likewise grade_changed)."""
    import warnings

    from shopcrm.errors import CampaignWarning

    def never_seen(shop: shopcrm.Shop, campaign: dict[str, Any]) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            shop.save_campaign(campaign, now=T0)
        return [str(w.message) for w in caught if issubclass(w.category, CampaignWarning) and "never occurs" in str(w.message)]

    shop = _vip_shop()
    assert never_seen(shop, _scenario({"segment": "vip"}))  # nothing tracked: nothing writes segment_entered
    shop.track_segment("vip", now=T0)
    assert never_seen(shop, _scenario({"segment": "vip"})) == []
    grade = {**_scenario(None), "id": "grade", "schedule": {"kind": "triggered", "on": "grade_changed", "steps": [{"send": "hi"}]}}
    assert never_seen(shop, grade)
    shop.track_attribute("grade", now=T0)
    assert never_seen(shop, grade) == []


@pytest.mark.parametrize("kind", ["duckdb", "memory"])
def test_a_refresh_replaces_exactly_its_candidates_next_changes(kind: str) -> None:
    """``apply`` with candidates: a candidate with a new next change has it (inserted or replaced), a candidate
    without one has none left, and every other customer keeps theirs (DuckDB upserts instead of deleting)."""
    from shopcrm.sources._membership_store import MemoryMembershipStore

    shop = shopcrm.Shop.open(path=":memory:")
    store = shop.source.membership_store() if kind == "duckdb" else MemoryMembershipStore()
    t0 = datetime(2026, 1, 1)
    day = timedelta(days=1)
    store.apply("s", entered=["a", 1], exited=[], at=t0, changes={"a": t0 + day, 1: t0 + 2 * day, "b": t0 + 3 * day,
                                                                     "c": t0 + 4 * day},
                candidates=None, state={"kind": "segment"})
    store.apply("other", entered=[], exited=[], at=t0, changes={"a": t0}, candidates=None, state={"kind": "segment"})
    store.apply("s", entered=["d"], exited=["a"], at=t0 + day, changes={"a": t0 + 5 * day, "d": t0 + 6 * day},
                candidates=["a", 1, "d", "x"], state={"kind": "segment"})
    assert store.next_changes("s") == {"a": t0 + 5 * day, "b": t0 + 3 * day, "c": t0 + 4 * day, "d": t0 + 6 * day}
    assert store.next_changes("other") == {"a": t0}
    assert store.members("s") == {1, "d"}


def test_next_changes_on_duckdb_keep_one_row_per_customer_without_a_key(tmp_path: Any) -> None:
    """DuckDB keeps the next changes in a table without a primary key (its index rewrite at each checkpoint was most
    of a refresh at 1M): a refresh deletes a candidate's moved or vanished row before writing, so each customer
    keeps one row; a store from before (schema version 3, keyed) is un-keyed on open, its rows kept."""
    import duckdb

    path = tmp_path / "shop.duckdb"
    t0, day = datetime(2026, 1, 1), timedelta(days=1)
    with shopcrm.Shop.open(path) as shop:
        store = shop.source.membership_store()
        store.apply("s", entered=["a"], exited=[], at=t0, changes={"a": t0 + day, "b": t0 + 2 * day}, candidates=None,
                    state={"kind": "segment"})
        for moved in (t0 + 3 * day, t0 + 3 * day, t0 + 4 * day):  # unchanged once, then moved
            store.apply("s", entered=[], exited=[], at=t0, changes={"a": moved}, candidates=["a", "b"],
                        state={"kind": "segment"})
            con = shop.source.con  # type: ignore[attr-defined]
            assert con.execute("SELECT customer_id, COUNT(*) FROM shopcrm_membership_changes GROUP BY 1").fetchall() == [
                ('"a"', 1)]
        assert store.next_changes("s") == {"a": t0 + 4 * day}
        keys = "SELECT COUNT(*) FROM duckdb_constraints() WHERE table_name = 'shopcrm_membership_changes' AND constraint_type = 'PRIMARY KEY'"
        assert con.execute(keys).fetchone() == (0,)
    # the table as schema version 3 made it (keyed), and the version row saying 3
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE shopcrm_membership_changes")
    con.execute("CREATE TABLE shopcrm_membership_changes (segment VARCHAR(200) NOT NULL, customer_id VARCHAR(200) NOT NULL, "
                "next_change_at VARCHAR(32) NOT NULL, PRIMARY KEY (segment, customer_id))")
    con.execute("INSERT INTO shopcrm_membership_changes VALUES ('s', '\"a\"', '2026-01-05 00:00:00.000000')")
    con.execute("UPDATE shopcrm_settings SET document = '{\"schema_version\": 3}' WHERE name = 'library'")
    con.close()
    with shopcrm.Shop.open(path) as shop:
        store = shop.source.membership_store()
        assert store.next_changes("s") == {"a": t0 + 4 * day}
        store.apply("s", entered=[], exited=[], at=t0, changes={"a": t0 + 9 * day}, candidates=["a"], state={"kind": "segment"})
        assert shop.source.con.execute(keys).fetchone() == (0,)  # type: ignore[attr-defined]  # upgraded on first write
        assert store.next_changes("s") == {"a": t0 + 9 * day}


# ---- issue 15, refresh speed: the fast paths of a refresh of many segments, each against a full recomputation


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
@given(streams(max_events=20), st.one_of(rules(max_depth=2), _timed()))
def test_segments_refreshed_together_each_equal_full_recomputation(stream: Stream, second: Any) -> None:
    """Two segments refreshed together share one copy of their candidates' rows (each reading its own candidates,
    the events of the names and windows either reads): each one's members equal the reference's at every
    refresh, whatever the other reads (few examples: each refreshes two segments up to five times)."""
    first = [e for e, at in zip(stream.shop.events, stream.arrivals, strict=True) if at == 0]
    shop = duckdb_shop(attrs.evolve(stream.shop, events=first))
    tracked = {"a": stream.rule, "b": second}
    for name, rule in tracked.items():
        shop.save_segment(name, rule)
        shop.track_segment(name)
    store = shop.source.membership_store()
    arrived = list(first)
    for i, now in enumerate(stream.times):
        if i:
            batch = [e for e, at in zip(stream.shop.events, stream.arrivals, strict=True) if at == i]
            if batch:
                shop.load_events(batch)
                arrived += batch
        refreshed = shop.refresh_segments(now=now)
        for name, rule in tracked.items():
            expected = evaluate(rule, stream.shop.customers, arrived, now=now, schema=stream.shop.schema)
            assert store.members(name) == expected, (i, name, refreshed[name])
        # the refresh's own entry and exit events are in the events table: rules see them
        arrived += [{"customer_id": c, "event": e, "ts": now, "segment": change.segment}
                    for change in refreshed.segments if not change.initial
                    for e, ids in (("segment_entered", change.entered), ("segment_exited", change.exited)) for c in ids]


def _refreshed_after_new_orders(rules_: dict[str, Any]) -> shopcrm.Shop:
    """Customer 1 added to the cart 2.5 days before T0 and ordered 2 days before (within a day: it cancels the
    cart); customer 2 ordered 40 days before; both order again half an hour after T0, refreshed at T0 + 1h."""
    day = timedelta(days=1)
    shop = shopcrm.Shop.open(path=":memory:")
    shop.load_customers([{"customer_id": i, "grade": "silver"} for i in (1, 2)])
    shop.load_events([{"customer_id": 1, "event": "cart_added", "ts": T0 - 2.5 * day, "amount": 0},
                      {"customer_id": 1, "event": "order_completed", "ts": T0 - 2 * day, "amount": 10},
                      {"customer_id": 2, "event": "order_completed", "ts": T0 - 40 * day, "amount": 10}])
    for name, rule in rules_.items():
        shop.save_segment(name, rule)
        shop.track_segment(name)
    assert shop.refresh_segments(now=T0).segments[0].initial
    shop.load_events([{"customer_id": c, "event": "order_completed", "ts": T0 + timedelta(minutes=30), "amount": 5}
                      for c in (1, 2)])
    later = shop.refresh_segments(now=T0 + timedelta(hours=1))
    assert all(change.full is None for change in later.segments)  # the fast path ran
    return shop


ABANDONED = {"performed": "cart_added", "within": {"last": "3d"},
             "not_followed_by": {"performed": "order_completed", "within": "1d"}}
ORDERED_NOW = {"performed": "order_completed", "within": {"last": "1h"}}
OLD_BUYERS = {"first_performed": "order_completed", "ago": {"gte": "30d"}}


def test_the_copied_events_reach_back_as_far_as_any_window_that_reads_them() -> None:
    """A refresh copies of each event name only what some tracked rule's window can read at ``now``: the order
    that cancelled a cart (``not_followed_by``) two days back is kept although the other rule on orders reads
    one hour, and a customer's first order is kept for ``first_performed`` (the whole history)."""
    shop = _refreshed_after_new_orders({"abandoned": ABANDONED, "ordered_now": ORDERED_NOW})
    members = shop.source.membership_store().members
    assert members("abandoned") == set()  # the cart was cancelled by the order within a day of it
    assert members("ordered_now") == {1, 2}
    shop = _refreshed_after_new_orders({"ordered_now": ORDERED_NOW, "old_buyers": OLD_BUYERS})
    assert shop.source.membership_store().members("old_buyers") == {2}
    day, now = timedelta(days=1), T0 + timedelta(hours=1)
    assert _horizons(parse_rule(ABANDONED), now) == {"cart_added": now - 3 * day, "order_completed": now - 3 * day}
    assert _horizons(parse_rule({"or": [ORDERED_NOW, ABANDONED]}), now) == {"cart_added": now - 3 * day,
                                                                          "order_completed": now - 3 * day}
    assert _horizons(parse_rule({"or": [ORDERED_NOW, OLD_BUYERS]}), now) == {"order_completed": None}
    assert _horizons(parse_rule({"performed": "x", "within": {"ago": {"gte": "1d"}}}), now) == {"x": None}
    assert _horizons(parse_rule({"lifecycle": "repeat"}), now) is None


def test_the_customers_fingerprint_reads_the_columns_tracked_rules_and_attributes_read() -> None:
    """A change to a customers column no tracked rule or attribute reads keeps the refresh incremental; a change
    to one a rule reads (or a tracked attribute) is noticed: the next refresh recomputes in full, and is right."""
    shop = shopcrm.Shop.open(path=":memory:")
    rows = [{"customer_id": i, "name": f"n{i}", "grade": "silver", "signed_up_at": T0 - timedelta(days=10)}
            for i in (1, 2, 3)]
    shop.load_customers(rows)
    shop.load_events([{"customer_id": 1, "event": "order_completed", "ts": T0 - timedelta(days=1), "amount": 1}])
    shop.save_segment("new", {"attribute": "signed_up_at", "ago": {"lt": "7d"}})
    shop.track_segment("new")
    shop.refresh_segments(now=T0)
    shop.load_customers([{**row, "name": "renamed"} for row in rows])
    quiet = shop.refresh_segments(now=T0 + timedelta(hours=1))
    assert quiet["new"].full is None
    rows[1]["signed_up_at"] = T0  # customer 2 signs up again: new since now
    shop.load_customers(rows)
    moved = shop.refresh_segments(now=T0 + timedelta(hours=2))
    assert moved["new"].full == "the customers table changed"
    assert moved["new"].entered == (2,)
    assert shop.source.membership_store().members("new") == {2}
    shop.track_attribute("grade", now=T0)
    shop.refresh_segments(now=T0 + timedelta(hours=3))
    rows[0]["grade"] = "gold"
    shop.load_customers(rows)
    graded = shop.refresh_segments(now=T0 + timedelta(hours=4))
    assert graded["new"].full == "the customers table changed"  # grade is read now: by the tracked attribute
    assert graded.attributes[0].changed == ((1, "silver", "gold"),)


def test_many_segments_written_together_equal_each_written_alone() -> None:
    """``apply_many`` (on DuckDB a few statements for every segment) leaves the stays and next changes that
    ``apply`` of each, one by one, leaves (the in-memory store)."""
    from shopcrm.sources._membership_store import MemoryMembershipStore, Refreshed

    t0, day = datetime(2026, 1, 1), timedelta(days=1)
    duck = shopcrm.Shop.open(path=":memory:").source.membership_store()
    memory = MemoryMembershipStore()
    rounds = [
        [Refreshed("s", ["a", 1, "b"], [], t0, {"a": t0 + day, 1: t0 + 2 * day, "b": t0 + 3 * day}, None, {"kind": "segment"}),
         Refreshed("t", ["a"], [], t0, {"a": t0 + day, "c": t0 + day}, None, {"kind": "segment"})],
        [Refreshed("s", ["c"], ["a"], t0 + day, {"a": t0 + 4 * day, "c": t0 + 5 * day}, ["a", "c", 1], {"kind": "segment"}),
         Refreshed("t", [], ["a"], t0 + day, {"a": t0 + day, "c": t0 + 6 * day}, ["a", "c", "x"], {"kind": "segment"}),
         Refreshed("u", ["z"], [], t0 + day, {"z": t0 + day}, None, {"kind": "segment"})],
        [Refreshed("s", ["a"], ["c", 1], t0 + 2 * day, {}, ["a", "c", 1], {"kind": "segment"}),
         Refreshed("t", ["a"], [], t0 + 2 * day, {"c": t0 + 7 * day}, ["a", "c"], {"kind": "segment"})],
    ]
    for writes in rounds:
        duck.apply_many(writes)
        for one in writes:
            memory.apply(one.segment, entered=one.entered, exited=one.exited, at=one.at, changes=one.changes,
                         candidates=one.candidates, state=one.state)
        for segment in ("s", "t", "u"):
            assert duck.stays(segment) == memory.stays(segment), segment
            assert duck.next_changes(segment) == memory.next_changes(segment), segment
    assert duck.members_among({"s": ["a", "c", 1, "q"], "t": ["a", "c"], "u": []}) == {"s": {"a"}, "t": {"a"}, "u": set()}
    assert duck.due_many(["s", "t", "u"], t0 + day) == {"s": [], "t": [], "u": ["z"]}


def test_a_new_event_makes_a_candidate_only_when_some_rule_reading_it_would_count_it() -> None:
    """A new event whose name every node reading it filters (``where``) makes its customer a candidate only when
    one of those filters holds: a bag view rechecks nobody for a shoe-view rule, a small order nobody for a cart
    cancelled only by a big one; a rule reading the name unfiltered makes every such customer one again."""
    shop = shopcrm.Shop.open(path=":memory:")
    shop.load_customers([{"customer_id": i, "grade": "silver"} for i in (1, 2, 3)])
    shop.load_events([{"customer_id": c, "event": "cart_added", "ts": T0 - timedelta(days=1), "amount": 0, "category": "x"}
                      for c in (1, 2)])
    segments = {"shoes": {"performed": "product_viewed", "where": {"category": "shoes"}, "within": {"last": "7d"}},
                "carts": {"performed": "cart_added", "within": {"last": "3d"},
                          "not_followed_by": {"performed": "order_completed", "where": {"amount": {"gte": 100}}}}}
    for name, rule in segments.items():
        shop.save_segment(name, rule)
        shop.track_segment(name)
    shop.refresh_segments(now=T0)
    new = [{"customer_id": 1, "event": "product_viewed", "category": "shoes", "amount": 0},
           {"customer_id": 2, "event": "product_viewed", "category": "bags", "amount": 0},
           {"customer_id": 1, "event": "order_completed", "category": "x", "amount": 500},
           {"customer_id": 2, "event": "order_completed", "category": "x", "amount": 5}]
    shop.load_events([{**event, "ts": T0 + timedelta(minutes=10)} for event in new])
    later = shop.refresh_segments(now=T0 + timedelta(hours=1))
    assert (later["shoes"].entered, later["shoes"].candidates) == ((1,), 1)
    assert (later["carts"].exited, later["carts"].candidates) == ((1,), 1)  # the big order cancels 1's cart
    assert shop.source.membership_store().members("carts") == {2}
    # a rule reading views unfiltered: every viewer is a candidate again, and enters it
    shop.save_segment("viewers", {"performed": "product_viewed", "within": {"last": "1h"}})
    shop.track_segment("viewers")
    shop.refresh_segments(now=T0 + timedelta(hours=1))
    shop.load_events([{"customer_id": c, "event": "product_viewed", "category": "bags", "amount": 0,
                       "ts": T0 + timedelta(hours=1, minutes=10)} for c in (2, 3)])
    last = shop.refresh_segments(now=T0 + timedelta(hours=2))
    assert last["viewers"].entered == (3,)  # 2 and 1 were members already (1's view is 80 minutes old: left)
    assert (last["shoes"].candidates, last["shoes"].entered) == (2, ())


def test_a_filter_comparing_an_event_timestamp_by_age_keeps_every_new_event_of_its_name() -> None:
    """``where`` comparing an event's timestamp by age can hold later for an event it rejects now: a new order
    delivered five minutes ago is not "delivered at least a day ago" yet, but its customer is rechecked (its
    boundary computed) so the refresh a day later lets them in."""
    shop = shopcrm.Shop.open(path=":memory:")
    shop.load_customers([{"customer_id": i, "grade": "silver"} for i in (1, 2)])
    shop.load_events([{"customer_id": 2, "event": "order_completed", "ts": T0 - timedelta(days=3),
                       "delivered_at": T0 - timedelta(days=2)}])
    shop.save_segment("delivered", {"performed": "order_completed", "where": {"delivered_at": {"ago": {"gte": "1d"}}}})
    shop.track_segment("delivered")
    shop.refresh_segments(now=T0)
    shop.load_events([{"customer_id": 1, "event": "order_completed", "ts": T0 + timedelta(minutes=10),
                       "delivered_at": T0 + timedelta(minutes=5)}])
    assert shop.refresh_segments(now=T0 + timedelta(hours=1))["delivered"].entered == ()
    assert shop.refresh_segments(now=T0 + timedelta(days=1, hours=1))["delivered"].entered == (1,)


_KILLED_BETWEEN_WRITES = """
import os, sys
from datetime import datetime, timedelta
import shopcrm
from shopcrm.sources.duckdb_store import DuckDBSource

def killed(self, events):  # the stays are written; the process dies before the events that announce them
    os._exit(9)

DuckDBSource._write_message_events = killed
with shopcrm.Shop.open(sys.argv[1]) as shop:
    shop.refresh_segments(now=datetime.fromisoformat(sys.argv[2]))
"""


def test_a_process_killed_between_the_stays_and_their_events_loses_neither(tmp_path: Any) -> None:
    import subprocess
    import sys

    path = tmp_path / "shop.duckdb"
    with shopcrm.Shop.open(path) as shop:
        shop.load_customers([{"customer_id": i, "name": f"고객{i}", "grade": "silver", "phone": f"0101234000{i}",
                              "sms_opt_in": True} for i in range(1, 4)])
        shop.load_events([{"customer_id": 1, "event": "order_completed", "ts": T0 - timedelta(days=1), "amount": 200}])
        shop.save_segment("vip", {"aggregate": "sum", "of": "amount", "performed": "order_completed",
                                  "within": {"last": "30d"}, "gte": 100})
        shop.track_segment("vip")
        shop.track_attribute("grade")
        shop.refresh_segments(now=T0)
        shop.load_events([{"customer_id": 2, "event": "order_completed", "ts": T0 + timedelta(minutes=10), "amount": 150}])
        shop.load_customers([{"customer_id": i, "name": f"고객{i}", "grade": "gold" if i == 3 else "silver",
                              "phone": f"0101234000{i}", "sms_opt_in": True} for i in range(1, 4)])
    later = T0 + timedelta(hours=1)
    done = subprocess.run([sys.executable, "-c", _KILLED_BETWEEN_WRITES, str(path), later.isoformat()], check=False)
    assert done.returncode == 9
    with shopcrm.Shop.open(path) as shop:
        # nothing of the killed refresh stands: customer 2 has not entered, and no event says so
        assert [s.customer_id for s in shop.segment_stays("vip")] == [1]
        again = shop.refresh_segments(now=later)
        assert again["vip"].entered == (2,)
        assert again.attributes[0].changed == ((3, "silver", "gold"),)
        written = shop.source.con.execute(
            "SELECT event, customer_id FROM events WHERE event IN ('segment_entered', 'grade_changed') ORDER BY 1"
        ).fetchall()
        assert written == [("grade_changed", 3), ("segment_entered", 2)]
        assert [(s.customer_id, s.exited_at) for s in shop.segment_stays("vip")] == [(1, None), (2, None)]


# -- two refreshes at once on the embedded store: two shops over one DuckDB file in one process (a scheduler's tick
# and a request handler's refresh); DuckDB has no row locks and fails the second writer of a row
def _two_duckdb_shops(path: Any) -> tuple[shopcrm.Shop, shopcrm.Shop]:
    first = shopcrm.Shop.open(path)
    first.load_customers([{"customer_id": i, "grade": "silver", "signed_up_at": T0 - timedelta(days=90)} for i in range(1, 6)])
    first.load_events([{"customer_id": 1, "event": "purchase", "ts": T0 - timedelta(days=1), "amount": 10}])
    first.save_segment("buyers", {"performed": "purchase", "within": {"last": "30d"}})
    first.track_segment("buyers")
    first.track_attribute("grade")
    first.refresh_segments(now=T0)
    return first, shopcrm.Shop.open(path)


def _entered_events(shop: shopcrm.Shop) -> list[Any]:
    return [row[0] for row in shop.source.con.execute(  # type: ignore[attr-defined]
        "SELECT customer_id FROM events WHERE event = 'segment_entered' ORDER BY ts, customer_id").fetchall()]


def test_a_refresh_while_another_holds_the_tracked_rows_on_duckdb_fails_as_a_conflict(tmp_path: Any) -> None:
    """The second of two overlapping refreshes is refused by DuckDB at its claim: it raises RefreshConflict (not the
    driver's TransactionException), keeps nothing, and run again after the first it records nothing twice."""
    first, second = _two_duckdb_shops(tmp_path / "shop.duckdb")
    first.load_events([{"customer_id": 2, "event": "purchase", "ts": T0 + timedelta(minutes=5), "amount": 20}])
    later = T0 + timedelta(hours=1)

    def the_other_refreshes() -> BaseException:
        with pytest.raises(shopcrm.RefreshConflict, match=r"another refresh wrote .* at the same time") as raised:
            second.refresh_segments(now=later)
        return raised.value

    refused = once_claimed(first.source.membership_store(), the_other_refreshes)  # the first holds the rows, uncommitted
    assert first.refresh_segments(now=later)["buyers"].entered == (2,)
    assert "Conflict" in str(refused[0].__cause__)
    again = second.refresh_segments(now=later)
    assert again["buyers"].entered == ()
    assert again["buyers"].exited == ()
    assert [(s.customer_id, s.exited_at) for s in second.segment_stays("buyers")] == [(1, None), (2, None)]
    assert _entered_events(second) == [2]
    first.close()
    second.close()


def test_a_refresh_that_read_before_another_committed_on_duckdb_fails_as_a_conflict(tmp_path: Any) -> None:
    """The other refresh commits after this one read the tracked states but before its claim: the claim (the first
    statement of its transaction to read the rows) finds the state the other recorded: RefreshConflict, nothing kept."""
    first, second = _two_duckdb_shops(tmp_path / "shop.duckdb")
    first.load_events([{"customer_id": 3, "event": "purchase", "ts": T0 + timedelta(minutes=5), "amount": 20}])
    later = T0 + timedelta(hours=1)
    committed = once_claimed(first.source.membership_store(), lambda: second.refresh_segments(now=later), first=True)
    with pytest.raises(shopcrm.RefreshConflict, match="another refresh recorded segment:buyers"):
        first.refresh_segments(now=later)
    assert committed[0]["buyers"].entered == (3,)
    again = first.refresh_segments(now=later)
    assert (again["buyers"].entered, again["buyers"].exited) == ((), ())
    assert [(s.customer_id, s.exited_at) for s in first.segment_stays("buyers")] == [(1, None), (3, None)]
    assert _entered_events(first) == [3]
    first.close()
    second.close()


def test_refreshes_racing_in_threads_on_duckdb_enter_each_customer_once(tmp_path: Any) -> None:
    """Two refreshes of the same instant in two threads over one DuckDB file: each either records or fails with
    RefreshConflict (never a driver error), and every entry and its event is written once."""
    first, second = _two_duckdb_shops(tmp_path / "shop.duckdb")
    for step in range(1, 5):
        now = T0 + timedelta(hours=step)
        first.load_events([{"customer_id": step + 1, "event": "purchase", "ts": now - timedelta(minutes=5), "amount": 1}])
        outcomes = at_once(*[lambda shop=shop, now=now: shop.refresh_segments(now=now)["buyers"].entered
                             for shop in (first, second)], refused=shopcrm.RefreshConflict)
        entered = [o for o in outcomes if not isinstance(o, Exception)]
        assert (step + 1,) in entered, outcomes
        assert all(o in ((step + 1,), ()) for o in entered), outcomes
    assert sorted(s.customer_id for s in first.segment_stays("buyers")) == [1, 2, 3, 4, 5]
    assert sorted(_entered_events(first)) == [2, 3, 4, 5]
    first.close()
    second.close()


@pytest.mark.parametrize("change", ["entry", "attribute"])
def test_a_refresh_adds_its_event_columns_before_its_transaction_so_others_can_write_events_meanwhile(
    tmp_path: Any, change: str,
) -> None:
    """The first entry events add a ``segment`` column to the events table, the first grade change ``old_grade`` and
    ``new_grade``. Added inside the refresh's transaction, DuckDB would refuse every other connection's insert into
    the events table until the refresh commits (a dispatcher settling its outcomes beside it would fail): they are
    added before, in a transaction of their own."""
    first, second = _two_duckdb_shops(tmp_path / "shop.duckdb")
    columns = "SELECT column_name FROM duckdb_columns() WHERE table_name = 'events'"
    assert not {"segment", "old_grade", "new_grade"} & {c for (c,) in first.source.con.execute(columns).fetchall()}  # type: ignore[attr-defined]
    if change == "entry":
        first.load_events([{"customer_id": 2, "event": "purchase", "ts": T0 + timedelta(minutes=5), "amount": 20}])
        written_event, shown = "segment_entered", "segment"
    else:
        first.load_customers([{"customer_id": i, "grade": "gold" if i == 3 else "silver",
                               "signed_up_at": T0 - timedelta(days=90)} for i in range(1, 6)])
        written_event, shown = "grade_changed", "new_grade"
    events = first.source.campaign_store()
    add_events = events.add_events
    written: list[int] = []

    def another_connection_writes_events_meanwhile(found: Any) -> None:
        add_events(found)  # inside the refresh's transaction, not committed
        second.load_events([{"customer_id": 4, "event": "page_viewed", "ts": T0 + timedelta(minutes=30), "amount": None}])
        written.append(len(found))

    events.add_events = another_connection_writes_events_meanwhile  # type: ignore[method-assign]
    changed = first.refresh_segments(now=T0 + timedelta(hours=1))
    assert written == [1]
    assert changed["buyers"].entered == ((2,) if change == "entry" else ())
    assert changed.attributes[0].changed == (() if change == "entry" else ((3, "silver", "gold"),))
    rows = first.source.con.execute(  # type: ignore[attr-defined]
        f"SELECT customer_id, event, {shown} FROM events WHERE event IN ('{written_event}', 'page_viewed') ORDER BY 2"
    ).fetchall()
    assert rows == [(4, "page_viewed", None), (2, "segment_entered", "buyers")] if change == "entry" else [
        (3, "grade_changed", "gold"), (4, "page_viewed", None)]
    first.close()
    second.close()


def test_a_tick_whose_refresh_meets_another_refresh_plans_without_it_and_the_next_tick_sends_once(tmp_path: Any) -> None:
    """A tick refreshes its tracked segments first. When another refresh holds them (a manual one, another tick),
    the tick's refresh is refused and the tick plans without it instead of failing: the other records the entry,
    and the next tick starts the scenario on its event, once."""
    from shopcrm.campaigns import MessagingPolicy

    path = tmp_path / "shop.duckdb"
    first = shopcrm.Shop.open(path)
    first.load_customers([{"customer_id": i, "name": f"고객{i}", "phone": f"0101234000{i}", "sms_opt_in": True}
                          for i in range(1, 4)])
    first.load_events([{"customer_id": 1, "event": "purchase", "ts": T0 - timedelta(days=1), "amount": 10}])
    first.save_segment("buyers", {"performed": "purchase", "within": {"last": "30d"}})
    first.track_segment("buyers", now=T0)
    first.messaging_policy = MessagingPolicy(sender_name="샵", sender_contact="1588-0000", opt_out_number="080-123-4567")
    first.save_settings()
    first.save_campaign(_scenario({"segment": "buyers"}), now=T0)
    assert first.tick(now=T0).messages == ()  # the first refresh records the members silently
    second = shopcrm.Shop.open(path)
    first.load_events([{"customer_id": 2, "event": "purchase", "ts": T0 + timedelta(minutes=5), "amount": 20}])
    later = T0 + timedelta(hours=1)
    # the other tick's refresh is refused while this refresh holds the rows: it plans without it
    ticked = once_claimed(second.source.membership_store(), lambda: first.tick(now=later))
    assert second.refresh_segments(now=later)["buyers"].entered == (2,)
    assert ticked[0].messages == ()  # the entry was not recorded yet when it planned
    following = first.tick(now=later + timedelta(minutes=5))
    assert [m.customer_id for m in following.messages] == [2]
    assert first.tick(now=later + timedelta(minutes=10)).messages == ()
    assert [r.customer_id for r in first.outbox() if r.campaign_id == "vip_welcome"] == [2]
    assert _entered_events(first) == [2]
    first.close()
    second.close()
