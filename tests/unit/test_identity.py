"""A run's identity: unique per execution forever, the same from every place that names it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from batchpipe_core.identity import run_folder, run_id, start_stamp

ARN = "arn:aws:states:us-east-1:123456789012:execution:batchpipe-pipeline:nightly"


def test_the_stamp_of_step_functions_start_time() -> None:
    assert start_stamp("2026-11-20T15:00:00.123Z") == "20261120T150000.123Z"
    assert start_stamp("2026-11-20T15:00:00Z") == "20261120T150000.000Z"
    assert start_stamp("2026-11-20T16:00:00.123+01:00") == "20261120T150000.123Z"


def test_the_folder_and_id_name_the_execution_and_its_start() -> None:
    assert (
        run_folder("retag", "nightly", "2026-11-20T15:00:00.123Z")
        == "runs/retag/nightly/20261120T150000.123Z/"
    )
    assert run_id(ARN, "2026-11-20T15:00:00.123Z") == ARN + "@20261120T150000.123Z"


moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda m: m.replace(microsecond=m.microsecond // 1000 * 1000))


@settings(max_examples=200, deadline=None)
@given(moment=moments)
def test_iso_start_time_and_eventbridge_epoch_millis_give_the_same_run(moment: datetime) -> None:
    """The execution status change event carries ``startDate`` in epoch milliseconds."""
    iso = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    millis = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert run_id(ARN, iso) == run_id(ARN, millis)


@settings(max_examples=200, deadline=None)
@given(first=moments, days=st.integers(min_value=90, max_value=3653), millis=st.integers(0, 86_400_000))
def test_a_reused_name_is_another_run(first: datetime, days: int, millis: int) -> None:
    """Names may be reused 90 days after an execution ends: the second start is later, never equal."""
    second = first + timedelta(days=days, milliseconds=millis)
    assert run_id(ARN, first) != run_id(ARN, second)
    assert run_folder("r", "nightly", first) != run_folder("r", "nightly", second)
