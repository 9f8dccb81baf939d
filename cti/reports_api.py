"""HTTP resources of the reports and of Erlang C staffing (routes listed in cti/api.py).

``GET /api/reports/queues`` and ``/api/reports/agents`` answer JSON, or CSV
with ``format=csv`` or ``Accept: text/csv``; ``GET /api/staffing`` puts the
Erlang C requirement of a forecast beside the agents logged in now. Bad
parameters answer 422 ``invalid-query`` naming each one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from acd.agents import LOGGED_OUT, NOT_READY
from acd.erlang import agents_required, asa, offered_load, service_level
from ccserver.calls.control import CallControl, ControlError
from cti.api_json import dumps
from cti.auth import Principal
from cti.openapi import QueryParam
from cti.reports import (
    INTERVALS,
    AgentRow,
    QueueRow,
    ReportQuery,
    ReportSource,
    agent_report,
    parse_when,
    queue_report,
    rows_csv,
)

__all__ = [
    "AGENT_REPORT_QUERY",
    "QUEUE_REPORT_QUERY",
    "REPORTS",
    "STAFFING_QUERY",
    "get_agent_report",
    "get_queue_report",
    "get_staffing",
]

REPORTS = web.AppKey("reports", ReportSource)

_RANGE = (
    QueryParam(
        "from",
        "start of the range (ISO 8601; a date or a time without a zone is in "
        "`tz`); default: 24 hours before `to`",
    ),
    QueryParam("to", "end of the range, excluded (ISO 8601); default: now"),
    QueryParam("interval", f"one of {', '.join(INTERVALS)} (default total)"),
    QueryParam("tz", "IANA time zone of the intervals, e.g. Europe/Paris (default UTC)"),
    QueryParam("format", "json (default) or csv; `Accept: text/csv` also gives CSV"),
)
QUEUE_REPORT_QUERY = (*_RANGE, QueryParam("queue", "only this queue"))
AGENT_REPORT_QUERY = (*_RANGE, QueryParam("agent", "only this agent (extension)"))
STAFFING_QUERY = (
    QueryParam("queue", "the queue (required)", required=True),
    QueryParam("calls", "forecast calls per interval (required)", required=True),
    QueryParam("aht", "forecast average handle time in seconds; default: the queue's live AHT"),
    QueryParam("interval", "seconds the forecast covers (default 900)"),
    QueryParam("sl", "service level target, 0 to 1 (default: the queue's)"),
    QueryParam("threshold", "service level threshold in seconds (default: the queue's)"),
    QueryParam("max_occupancy", "highest acceptable occupancy, 0 to 1 (default 1)"),
)


def _invalid(errors: list[dict[str, str]]) -> ControlError:
    names = ", ".join(e["field"] for e in errors)
    return ControlError(
        422, "invalid-query", f"invalid query parameters: {names}", {"errors": errors}
    )


def _source(request: web.Request) -> ReportSource:
    source = request.app.get(REPORTS)
    if source is None:
        raise ControlError(
            503, "reports-unavailable", "this node has no contact store to report on"
        )
    return source


def _report_query(request: web.Request, source: ReportSource, key: str) -> ReportQuery:
    params = request.query
    errors: list[dict[str, str]] = []
    tz = ZoneInfo("UTC")
    try:
        tz = ZoneInfo(params.get("tz", source.default_tz))
    except (ZoneInfoNotFoundError, ValueError):
        errors.append({"field": "tz", "message": f"unknown time zone {params.get('tz')!r}"})
    until = datetime.now(UTC)
    since = until - timedelta(days=1)
    for name in ("from", "to"):
        if name in params:
            try:
                value = parse_when(params[name], tz)
            except ValueError:
                errors.append({"field": name, "message": "not an ISO 8601 date or time"})
                continue
            if name == "from":
                since = value
            else:
                until = value
    if "from" in params and "to" not in params:
        until = max(until, since + timedelta(seconds=1))
    interval = params.get("interval", "total")
    if interval not in INTERVALS:
        errors.append({"field": "interval", "message": f"one of {', '.join(INTERVALS)}"})
    fmt = params.get("format", "json")
    if fmt not in ("json", "csv"):
        errors.append({"field": "format", "message": "json or csv"})
    if errors:
        raise _invalid(errors)
    try:
        return ReportQuery(
            since,
            until,
            interval,  # type: ignore[arg-type]
            tz,
            queue=params.get("queue") if key == "queue" else None,
            agent=params.get("agent") if key == "agent" else None,
        )
    except ValueError as exc:
        raise _invalid([{"field": "from", "message": str(exc)}]) from None


def _wants_csv(request: web.Request) -> bool:
    fmt = request.query.get("format")
    if fmt is not None:
        return fmt == "csv"
    return "text/csv" in request.headers.get("Accept", "")


def _csv_response(text: str, name: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def _envelope(q: ReportQuery, rows: list[Any]) -> dict[str, Any]:
    return {
        "from": q.since.isoformat(),
        "to": q.until.isoformat(),
        "interval": q.interval,
        "tz": q.tz.key,
        "rows": rows,
    }


async def _answer(
    request: web.Request, q: ReportQuery, rows: list[Any], kind: type[QueueRow | AgentRow]
) -> web.Response:
    """JSON or CSV, encoded in a worker thread: a long report must not hold up the calls."""
    if _wants_csv(request):
        text = await asyncio.to_thread(rows_csv, rows, kind)
        return _csv_response(text, "queues" if kind is QueueRow else "agents")
    body = await asyncio.to_thread(dumps, _envelope(q, rows))
    return web.Response(text=body, content_type="application/json")


async def get_queue_report(request: web.Request, who: Principal) -> Any:
    source = _source(request)
    q = _report_query(request, source, "queue")
    return await _answer(request, q, await queue_report(source, q), QueueRow)


async def get_agent_report(request: web.Request, who: Principal) -> Any:
    source = _source(request)
    q = _report_query(request, source, "agent")
    return await _answer(request, q, await agent_report(source, q), AgentRow)


# -- staffing --------------------------------------------------------------------------------


def _number(
    params: Mapping[str, str],
    name: str,
    errors: list[dict[str, str]],
    default: float | None,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
) -> float | None:
    text = params.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"> {low}" if low_open else f"≥ {low}"
        upper = f" and ≤ {high}" if math.isfinite(high) else ""
        errors.append({"field": name, "message": f"a number {bound}{upper}"})
        return None
    return value


async def get_staffing(request: web.Request, who: Principal) -> Any:
    from cti.api import CONTROL  # the application key lives with the API routes

    control: CallControl = request.app[CONTROL]
    params = request.query
    name = params.get("queue")
    if not name:
        raise _invalid([{"field": "queue", "message": "required"}])
    live = next((q for q in control.queues() if q["queue"] == name), None)
    if live is None:
        raise ControlError(404, "queue-not-found", f"no queue {name}", {"queue": name})
    source = request.app.get(REPORTS)
    thresholds = source.thresholds if source is not None else {}
    errors: list[dict[str, str]] = []
    calls = _number(params, "calls", errors, None, low=0)
    if "calls" not in params:
        errors.append({"field": "calls", "message": "required: forecast calls per interval"})
    aht = _number(params, "aht", errors, live.get("aht"), low=0, low_open=True)
    if aht is None and "aht" not in params:
        errors.append({"field": "aht", "message": "required: the queue has no live AHT yet"})
    interval = _number(params, "interval", errors, 900.0, low=0, low_open=True)
    target = _number(params, "sl", errors, live.get("service_level_target", 0.8), low=0, high=0.999)
    threshold = _number(params, "threshold", errors, thresholds.get(name, 20.0), low=0)
    max_occ = _number(params, "max_occupancy", errors, 1.0, low=0, high=1, low_open=True)
    if errors:
        raise _invalid(errors)
    assert None not in (calls, aht, interval, target, threshold, max_occ)
    load = offered_load(calls or 0.0, interval or 900.0, aht or 1.0)
    try:
        need = agents_required(
            load,
            aht or 1.0,
            target=target or 0.0,
            threshold=threshold or 0.0,
            max_occupancy=max_occ or 1.0,
        )
    except ValueError as exc:
        raise _invalid([{"field": "calls", "message": str(exc)}]) from None
    states: dict[str, int] = live.get("agents", {})
    logged_in = sum(n for s, n in states.items() if s != LOGGED_OUT)
    working = sum(n for s, n in states.items() if s not in (LOGGED_OUT, NOT_READY))
    around = range(max(math.floor(load) + 1, need.agents - 3), need.agents + 4)
    return {
        "queue": name,
        "forecast": {"calls": calls, "interval": interval, "aht": aht, "load": round(load, 4)},
        "target": {"service_level": target, "threshold": threshold, "max_occupancy": max_occ},
        "required": {
            "agents": need.agents,
            "probability_wait": round(need.probability_wait, 4),
            "service_level": round(need.service_level, 4),
            "asa": round(need.asa, 3),
            "occupancy": round(need.occupancy, 4),
        },
        "logged_in": logged_in,
        "working": working,
        "agents_by_state": states,
        "shortfall": max(0, need.agents - working),
        "table": [
            {
                "agents": n,
                "service_level": round(service_level(n, load, aht or 1.0, threshold or 0.0), 4),
                "asa": round(asa(n, load, aht or 1.0), 3),
                "occupancy": round(load / n, 4),
            }
            for n in around
            if n > 0
        ],
    }
