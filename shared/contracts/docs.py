"""Generate docs/events.md and docs/asyncapi.json from the contract models.

Run `make docs` (or `python -m shared.contracts.docs`); a test fails when the committed
documents differ from what the models generate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from shared.contracts.envelope import Envelope
from shared.contracts.topics import SERVICES, TOPICS, dead_letter_topic

DOCS = Path(__file__).resolve().parents[2] / "docs"
DLQ_HEADERS = (
    "dlq.original_topic",
    "dlq.partition",
    "dlq.offset",
    "dlq.error_type",
    "dlq.error",
    "dlq.consumer",
    "dlq.at",
)


def asyncapi() -> dict[str, Any]:
    """An AsyncAPI 3 document: one channel and message per topic, schemas from pydantic."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for name, topic in TOPICS.items():
        message_id = name.replace(".", "_").replace("-", "_")
        schema = Envelope[topic.payload].model_json_schema(  # type: ignore[name-defined]
            mode="serialization", ref_template="#/components/schemas/{model}"
        )
        messages[message_id] = {
            "name": topic.event_type,
            "title": topic.event_type,
            "summary": topic.summary,
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "event_type": {"const": topic.event_type},
                    "event_id": {"type": "string", "format": "uuid"},
                    "schema_version": {"type": "string"},
                },
            },
            "payload": schema,
        }
        channels[message_id] = {
            "address": name,
            "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}},
            "description": f"Published by {topic.producer}. Key: customer_id.",
        }
        operations[f"publish_{message_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{message_id}"},
        }
    for service in SERVICES:
        dlq = dead_letter_topic(service)
        channel_id = dlq.replace(".", "_").replace("-", "_")
        channels[channel_id] = {
            "address": dlq,
            "description": ("The original value, untouched; headers: " + ", ".join(DLQ_HEADERS)),
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Steward events",
            "version": "1.0.0",
            "description": "Event contracts of the Steward customer-care services.",
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def events_markdown() -> str:
    """A human-readable list of topics and payload fields."""
    lines = [
        "# Event contracts",
        "",
        "Generated from `shared/contracts` by `make docs` — do not edit by hand.",
        "Every value is a JSON envelope (`event_id`, `event_type`, `schema_version`,",
        "`occurred_at`, `producer`, `correlation_id`, `causation_id`, `data`); the key is",
        "the `customer_id`. Amounts are strings (integers accepted, floats rejected) of at",
        "most two decimal places and 16 digits before the point (extends DESIGN.md: what",
        "NUMERIC(18, 2) holds; a larger or finer amount is dead-lettered as",
        "`schema_invalid`); timestamps are RFC 3339 with an offset, from 1900 to before",
        "3000 (UTC; extends DESIGN.md likewise). Machine-readable: `asyncapi.json`.",
        "",
    ]
    for name, topic in TOPICS.items():
        lines += [
            f"## `{name}` — {topic.event_type}",
            "",
            f"{topic.summary} Producer: {topic.producer}.",
            "",
        ]
        schema = topic.payload.model_json_schema(mode="serialization")
        required = set(schema.get("required", []))
        lines += ["| field | type | required | description |", "|---|---|---|---|"]
        for field, prop in schema.get("properties", {}).items():
            kind = _type_of(prop)
            desc = (prop.get("description") or "").replace("|", "\\|")
            lines.append(
                f"| `{field}` | {kind} | {'yes' if field in required else 'no'} | {desc} |"
            )
        lines.append("")
    lines += [
        "## `<service>.dead-letter.v1`",
        "",
        "The original message value and key, untouched. Headers: "
        + ", ".join(f"`{h}`" for h in DLQ_HEADERS)
        + ". An `OpsAlert` of kind `dead_letter` accompanies every dead letter.",
        "",
    ]
    return "\n".join(lines)


def _type_of(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return " / ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    for combo in ("anyOf", "oneOf"):
        if combo in prop:
            return " or ".join(_type_of(p) for p in prop[combo])
    kind = str(prop.get("type", "any"))
    return f"{kind} ({prop['format']})" if "format" in prop else kind


def render() -> dict[Path, str]:
    """Every generated document, by path."""
    return {
        DOCS / "events.md": events_markdown(),
        DOCS / "asyncapi.json": json.dumps(asyncapi(), indent=2, sort_keys=True) + "\n",
    }


def main() -> int:
    for path, text in render().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(DOCS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
