"""Due dates never fall on a closed day, and books come back before the summer."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from server.calendar import CalendarError, LibraryCalendar, format_date
from server.config import CalendarConfig, ClosedPeriod, SchoolYear

from circulation_sample import school_calendar

D = dt.date
SUMMER = ClosedPeriod(name="Nghỉ hè", start=D(2027, 6, 1), end=D(2027, 8, 31))


@pytest.fixture
def calendar() -> LibraryCalendar:
    return LibraryCalendar(school_calendar())


def test_open_days(calendar: LibraryCalendar) -> None:
    assert calendar.is_open(D(2026, 10, 5))           # Monday
    assert calendar.is_open(D(2026, 10, 10))          # Saturday: school libraries open
    assert not calendar.is_open(D(2026, 10, 11))      # Sunday
    assert not calendar.is_open(D(2026, 9, 2))        # Quốc khánh
    assert not calendar.is_open(D(2027, 2, 8))        # Tết (a Monday)
    assert not calendar.is_open(D(2027, 7, 15))       # summer
    assert calendar.is_open(D(2027, 9, 1))            # after the summer


def test_local_date_is_the_date_in_the_site_time_zone(calendar: LibraryCalendar) -> None:
    late_utc_evening = dt.datetime(2026, 10, 4, 18, 30, tzinfo=dt.timezone.utc)
    assert calendar.local_date(late_utc_evening) == D(2026, 10, 5)
    with pytest.raises(ValueError, match="aware"):
        calendar.local_date(dt.datetime(2026, 10, 4, 18, 30))


def test_plain_due_date_on_an_open_day(calendar: LibraryCalendar) -> None:
    assert calendar.due_date(D(2026, 10, 5), 7) == D(2026, 10, 12)


def test_due_date_on_sunday_moves_to_monday(calendar: LibraryCalendar) -> None:
    assert calendar.due_date(D(2026, 10, 5), 6) == D(2026, 10, 12)


def test_holidays_and_sunday_in_a_row_are_all_skipped(calendar: LibraryCalendar) -> None:
    # 30/4 and 1/5 are holidays, 2/5 is a Sunday.
    assert calendar.due_date(D(2027, 4, 23), 7) == D(2027, 5, 3)


def test_more_closed_weekdays() -> None:
    calendar = LibraryCalendar(CalendarConfig(closed_weekdays=["saturday", "sunday"]))
    assert calendar.due_date(D(2026, 10, 5), 5) == D(2026, 10, 12)  # Saturday -> Monday


def test_due_date_inside_a_closed_period_comes_back_before_it(calendar: LibraryCalendar) -> None:
    # 29/1 + 7 = 5/2, the first day of Tết: due on Thursday 4/2 instead.
    assert calendar.due_date(D(2027, 1, 29), 7) == D(2027, 2, 4)


def test_due_date_in_the_summer_break_is_the_last_open_day_before_it() -> None:
    calendar = LibraryCalendar(CalendarConfig(closed_periods=[SUMMER]))
    assert calendar.due_date(D(2027, 5, 25), 14) == D(2027, 5, 31)


def test_moving_forward_into_a_closed_period_pulls_back_instead() -> None:
    summer = ClosedPeriod(name="Nghỉ hè", start=D(2027, 5, 31), end=D(2027, 8, 31))
    calendar = LibraryCalendar(CalendarConfig(closed_periods=[summer]))
    # 24/5 + 6 = Sunday 30/5; Monday 31/5 is the summer, so Saturday 29/5.
    assert calendar.due_date(D(2027, 5, 24), 6) == D(2027, 5, 29)


def test_school_year_end_caps_short_loans() -> None:
    calendar = LibraryCalendar(CalendarConfig(
        school_year=SchoolYear(start=D(2026, 9, 5), end=D(2027, 5, 29))))
    assert calendar.due_date(D(2027, 5, 20), 14) == D(2027, 5, 29)
    # Sunday 30/5 would move to Monday 31/5, after the year: Saturday 29/5.
    assert calendar.due_date(D(2027, 5, 24), 6) == D(2027, 5, 29)


def test_school_year_end_before_a_later_summer_break_wins() -> None:
    late_summer = ClosedPeriod(name="Nghỉ hè", start=D(2027, 6, 10), end=D(2027, 8, 31))
    calendar = LibraryCalendar(CalendarConfig(
        closed_periods=[late_summer],
        school_year=SchoolYear(start=D(2026, 9, 5), end=D(2027, 5, 29))))
    assert calendar.due_date(D(2027, 5, 25), 21) == D(2027, 5, 29)


def test_long_loans_are_due_on_the_last_open_day_of_the_school_year(
        calendar: LibraryCalendar) -> None:
    assert calendar.school_year_last_open_day() == D(2027, 5, 31)
    assert calendar.due_date(D(2026, 9, 7), 7, long_loan=True) == D(2027, 5, 31)
    # A year ending on a Sunday ends, for loans, on the Saturday before.
    sunday_end = LibraryCalendar(CalendarConfig(
        school_year=SchoolYear(start=D(2026, 9, 5), end=D(2027, 5, 30))))
    assert sunday_end.school_year_last_open_day() == D(2027, 5, 29)
    assert sunday_end.due_date(D(2026, 9, 7), 7, long_loan=True) == D(2027, 5, 29)


def test_long_loan_without_a_school_year_is_a_plain_loan() -> None:
    calendar = LibraryCalendar(CalendarConfig())
    assert calendar.school_year_last_open_day() is None
    assert calendar.due_date(D(2026, 10, 5), 7, long_loan=True) == D(2026, 10, 12)


def test_loan_made_during_the_summer_is_due_after_it(calendar: LibraryCalendar) -> None:
    # The configured year is over, so it no longer caps; the summer cannot be pulled
    # back from (nothing open since the loan), so the book is due when it reopens.
    assert calendar.due_date(D(2027, 6, 15), 7) == D(2027, 9, 1)
    assert calendar.due_date(D(2027, 6, 15), 7, long_loan=True) == D(2027, 9, 1)


def test_due_dates_never_fall_on_a_closed_day(calendar: LibraryCalendar) -> None:
    start = D(2026, 9, 5)
    while start <= D(2027, 5, 31):
        for days in (3, 6, 7, 14, 30):
            due = calendar.due_date(start, days)
            assert calendar.is_open(due), (start, days, due)
            assert start <= due <= D(2027, 5, 31), (start, days, due)
        start += dt.timedelta(days=1)


def test_format_date() -> None:
    assert format_date(D(2026, 9, 5)) == "05/09/2026"


# --- bad configurations -------------------------------------------------------------

def test_loan_days_must_be_positive(calendar: LibraryCalendar) -> None:
    with pytest.raises(CalendarError, match="loan_days"):
        calendar.due_date(D(2026, 10, 5), 0)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        CalendarConfig(timezone="Asia/Saigon_City")


def test_closed_every_day_is_refused() -> None:
    with pytest.raises(ValidationError, match="closed every day"):
        CalendarConfig(closed_weekdays=["monday", "tuesday", "wednesday", "thursday",
                                        "friday", "saturday", "sunday"])


def test_period_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(ValidationError, match="ends before it starts"):
        ClosedPeriod(name="Nghỉ hè", start=D(2027, 8, 31), end=D(2027, 6, 1))


def test_school_year_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(ValidationError, match="end after it starts"):
        SchoolYear(start=D(2027, 5, 31), end=D(2026, 9, 5))


def test_school_year_with_no_open_day_is_refused() -> None:
    config = CalendarConfig(
        closed_periods=[ClosedPeriod(name="Sửa chữa", start=D(2026, 8, 1), end=D(2027, 7, 1))],
        school_year=SchoolYear(start=D(2026, 9, 5), end=D(2027, 5, 31)))
    with pytest.raises(CalendarError, match="has no open day"):
        LibraryCalendar(config)


def test_endless_closure_raises_instead_of_looping() -> None:
    closure = ClosedPeriod(name="Xây mới", start=D(2026, 10, 1), end=D(2028, 12, 31))
    calendar = LibraryCalendar(CalendarConfig(closed_periods=[closure]))
    with pytest.raises(CalendarError, match="no open day within 400 days"):
        calendar.due_date(D(2026, 10, 5), 7)
