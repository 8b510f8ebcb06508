"""MLflow's proto-JSON responses, NaN and infinities included (see eventflow.proto_json)."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

from eventflow.proto_json import replace_non_finite, spelled


class ProtoJSONResponse(JSONResponse):
    """A JSON response whose NaN and infinities are proto3's strings."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        except ValueError:  # a NaN or ±inf somewhere: only such responses pay for the walk
            return json.dumps(replace_non_finite(content, spelled), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
