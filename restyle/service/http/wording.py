"""A refusal's reason in the words of the dashboard's form: what to change, not how the API or Python said it.

The API keeps its own wording (it names fields and routes a program sends); a page shows :func:`plain` of it.
"""

from __future__ import annotations

import re

# The form's labels for the JobSpec's fields.
LABELS = {
    "strength": "Strength",
    "deflicker": "Deflicker",
    "style": "The style",
    "model": "The model",
    "style_image": "The painting",
    "output": "The output settings",
    "params": "The model's settings",
}

_PYDANTIC = [
    (re.compile(r"Input should be less than or equal to (\S+)"), "must be at most {0}"),
    (re.compile(r"Input should be less than (\S+)"), "must be under {0}"),
    (re.compile(r"Input should be greater than or equal to (\S+)"), "must be at least {0}"),
    (re.compile(r"Input should be greater than (\S+)"), "must be over {0}"),
    (re.compile(r"Input should be a (?:valid|finite) number.*"), "must be a number, like 0.8"),
    (re.compile(r"Input should be a valid string.*"), "must be text"),
    (re.compile(r"Field required"), "is needed"),
]
_NEEDS_PICTURE = re.compile(r"model (\S+) needs a picture\b.*")
_API_HINT = re.compile(r"\s*\((?:GET|POST|PUT|DELETE|PATCH) /[^)]*\)")
_PY_ERROR = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\b:?\s*")
_FIELD = re.compile(r"^([a-z_]+)(?:\.[\w.]+)?: (.*)$")


def plain(reason: str) -> str:
    """``reason`` as the form's words: each '; '-separated part its own sentence."""
    parts = [_part(part.strip()) for part in reason.split("; ") if part.strip()]
    return " ".join(parts) or "That was refused."


def _part(text: str) -> str:
    picture = _NEEDS_PICTURE.match(text)
    if picture:
        return "That model needs a painting: upload one under “Your own picture”, or choose one you saved."
    text = _API_HINT.sub("", text)
    text = _PY_ERROR.sub("", text).strip()
    field = _FIELD.match(text)
    if field and field.group(1) in LABELS:
        label, text = LABELS[field.group(1)], field.group(2)
        for pattern, words in _PYDANTIC:
            found = pattern.fullmatch(text) or pattern.match(text)
            if found:
                return f"{label} {words.format(*found.groups())}."
        return f"{label}: {text}" + ("" if text.endswith(".") else ".")
    if not text:
        return "That was refused."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."
