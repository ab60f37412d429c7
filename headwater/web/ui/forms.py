"""Turning what the pages' forms send into what the services take."""

from __future__ import annotations

import json
from typing import Any

from headwater.errors import UserError


def form_conf(defaults: dict[str, Any], raw: dict[str, str]) -> dict[str, Any]:
    """Trigger-form text -> a run's conf; the service then checks it against the DAG's params.

    A param whose default is a string takes the text as it is; any other is parsed as JSON. A field
    left as the form showed it (the default, secrets masked as ``***``) or emptied keeps the default,
    so a secret never has to travel to the browser and back.
    """
    from headwater.web.services.masking import mask_mapping

    shown = mask_mapping(defaults)
    out: dict[str, Any] = {}
    for name, text in raw.items():
        default = defaults.get(name)
        as_shown = shown.get(name)
        if name in defaults and text == (as_shown if isinstance(as_shown, str) else json.dumps(as_shown)):
            continue
        if text == "" and not isinstance(default, str):
            continue
        if isinstance(default, str) or name not in defaults:
            out[name] = text  # unknown names go through so the service names them in its error
            continue
        try:
            out[name] = json.loads(text)
        except ValueError:
            raise UserError(
                f"param {name!r}: {text!r} is not a JSON value",
                hint=f"give a value like its default, {json.dumps(default)}",
            ) from None
    return out
