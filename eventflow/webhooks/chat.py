"""Delivery bodies for chat tools' incoming webhooks: Slack and Microsoft Teams.

A subscription created with ``format`` ``slack`` or ``teams`` receives, instead of
eventflow's JSON, a message those tools post as it is: Slack's ``{"text", "blocks"}``
(mrkdwn sections) and a Teams message carrying one Adaptive Card. The words are the
audit's (eventflow/audit/describe.py), or an alert's own title and text.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from eventflow.events import Event

FORMATS = {"eventflow": None, "slack": "slack", "teams": "teams"}  # the API's word → the stored flavor
_LEVEL_MARK = {"info": "ℹ️", "warning": "⚠️", "error": "🚨"}


def _summary(event: Event) -> tuple[str, str]:
    """A title and a line of detail for the event."""
    p = event.payload
    if event.type.startswith("alert."):
        mark = _LEVEL_MARK.get(p.get("level", "warning"), "") if event.type != "alert.resolved" else "✅"
        return f"{mark} {p['title']}".strip(), p.get("text") or f"run {p['run_id']}"
    from eventflow.audit.describe import Narrator

    return Narrator().describe(event), f"{event.type} · {event.key}"


def _when(event: Event) -> str:
    return datetime.datetime.fromtimestamp(event.time / 1000, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _escape_mrkdwn(text: str) -> str:
    # Slack's three control characters (its docs: escape &, <, > in text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(event: Event) -> str:
    title, detail = _summary(event)
    body: dict[str, Any] = {
        "text": f"{title} — {detail}",  # the notification's text, and what clients without blocks show
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_escape_mrkdwn(title)}*\n{_escape_mrkdwn(detail)}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _escape_mrkdwn(f"eventflow · {event.type} · {_when(event)} · by {event.actor}")}]},
        ],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def teams_body(event: Event) -> str:
    title, detail = _summary(event)
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "TextBlock", "text": detail, "wrap": True},
            {"type": "FactSet", "facts": [{"title": "Event", "value": event.type}, {"title": "When", "value": _when(event)},
                                          {"title": "By", "value": event.actor}]},
        ],
    }
    body = {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
