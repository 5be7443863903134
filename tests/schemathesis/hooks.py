"""Schemathesis hooks for Posthorn's API (loaded through SCHEMATHESIS_HOOKS).

- `message/rfc822` bodies (POST /v1/messages/raw) go on the wire as text.
- Random sends almost never name the account's own sender, so every one
  would stop at 403 and the 202 answer (and its schema) would go untested.
  About half of the generated sends are therefore pointed at the sender
  run.sh created, a plain recipient and its label; the rest stay as they
  were generated. The choice is a hash of the generated case, so a run is
  as repeatable as the generation.
"""

import json
import zlib

import schemathesis

SENDER = "app@example.com"
RECIPIENT = "someone@example.net"
LABEL = "newsletter"

schemathesis.serializer.alias("message/rfc822", "text/plain")


def _picked(*parts) -> bool:
    blob = json.dumps(parts, sort_keys=True, default=repr).encode()
    return zlib.crc32(blob) % 2 == 0


@schemathesis.hook
def map_case(context, case):
    op = case.operation
    if op.method.upper() != "POST":
        return case
    if op.path == "/v1/messages" and isinstance(case.body, dict):
        if not _picked(case.body):
            return case
        body = dict(case.body)
        if isinstance(body.get("from"), str) or "from" not in body:
            body["from"] = SENDER
        if not isinstance(body.get("to"), (str, list, dict)):
            body["to"] = [RECIPIENT]
        elif isinstance(body.get("to"), str):
            body["to"] = RECIPIENT
        if isinstance(body.get("label"), str):
            body["label"] = LABEL
        case.body = body
    elif op.path == "/v1/messages/raw" and isinstance(case.body, str):
        if not _picked(case.body, case.query):
            return case
        subject = " ".join(case.body.split())[:60]
        case.body = (
            f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n"
            f"\r\n{case.body}\r\n"
        )
        query = dict(case.query or {})
        query.pop("from", None)
        query.pop("to", None)
        if isinstance(query.get("label"), str):
            query["label"] = LABEL
        case.query = query
    return case
