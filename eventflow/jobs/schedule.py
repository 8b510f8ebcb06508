"""Cron schedules in a time zone: checked at the edge, and the ticks they give.

A schedule is five cron fields (croniter reads them) in an IANA time zone, so that
``0 3 * * *`` in Europe/Berlin is 03:00 there in winter and summer alike. Ticks are
milliseconds since the Unix epoch, as event times are.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

from eventflow.validation import InvalidInput

# A catch-up after a long stop fires at most this many missed ticks (a */1 job down for a
# year would otherwise flood the agents).
MAX_CATCH_UP = 1000


def check_timezone(name: object) -> str:
    if name is None or name == "":
        return "UTC"
    if not isinstance(name, str):
        raise InvalidInput(f"Invalid value {name!r} for parameter 'timezone': give an IANA time zone such as Europe/Berlin or UTC")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        near = sorted(z for z in available_timezones() if z.lower().endswith(name.lower().rsplit("/", 1)[-1]))[:3]
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise InvalidInput(f"Invalid value {name!r} for parameter 'timezone': unknown time zone{hint}; give an IANA name such as Europe/Berlin or UTC") from None
    return name


def check_cron(expression: object) -> str:
    """Five cron fields (minute hour day-of-month month day-of-week), optionally a sixth
    for seconds (croniter's form: ``* * * * * */10`` is every ten seconds), or InvalidInput."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidInput("Invalid value for parameter 'cron': give five fields, e.g. '0 3 * * *' (03:00 every day)")
    given = " ".join(expression.split())
    if len(given.split()) not in (5, 6):
        raise InvalidInput(f"Invalid value {given!r} for parameter 'cron': it needs five fields (minute hour day-of-month month "
                           "day-of-week, and optionally a sixth: seconds), e.g. '0 3 * * *' (03:00 every day) or "
                           "'*/15 * * * *' (every 15 minutes)")
    try:
        croniter(given, datetime(2026, 1, 1, tzinfo=timezone.utc)).get_next(datetime)
    except (CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, ValueError, KeyError) as error:
        raise InvalidInput(f"Invalid value {given!r} for parameter 'cron': {error}; e.g. '0 3 * * *' (03:00 every day)") from None
    return given


def next_tick(expression: str, zone: str, after_ms: int) -> int:
    """The first tick strictly after ``after_ms``."""
    start = datetime.fromtimestamp(after_ms / 1000, ZoneInfo(zone))
    return int(croniter(expression, start).get_next(datetime).timestamp() * 1000)


def ticks_due(expression: str, zone: str, first_ms: int, now_ms: int, limit: int = MAX_CATCH_UP) -> list[int]:
    """The ticks from ``first_ms`` (a tick) up to ``now_ms``, at most ``limit``, oldest first."""
    ticks: list[int] = []
    tick = first_ms
    while tick <= now_ms:
        ticks.append(tick)
        if len(ticks) > limit:
            ticks.pop(0)
        tick = next_tick(expression, zone, tick)
    return ticks
