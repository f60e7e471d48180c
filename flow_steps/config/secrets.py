"""Secrets never reach a message, a parameter, a tag or a log: the one place that masks them."""

from __future__ import annotations

import os
import re

API_KEY_VARIABLES = ("QUANDL_API_KEY", "NASDAQ_DATA_LINK_API_KEY")
TIINGO_KEY_VARIABLE = "TIINGO_API_KEY"  # sent only in a request header, never in a URL
# Every variable whose value is a secret: the price sources' keys and a Ray cluster's token.
SECRET_VARIABLES = (*API_KEY_VARIABLES, TIINGO_KEY_VARIABLE, "RAY_AUTH_TOKEN")
MASK = "***"
SECRET_QUERY = re.compile(r"(?i)([?&](?:api_key|apikey|api-key|token|access_token|key)=)([^&#\s]+)")


def mask_secrets(text: str) -> str:
    """`text` with the secrets from the environment and key-like URL query values replaced by ***."""
    for name in SECRET_VARIABLES:
        secret = os.environ.get(name, "").strip()
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    return SECRET_QUERY.sub(
        lambda match: match.group(0) if is_placeholder(match) else match.group(1) + MASK, text
    )


def is_placeholder(match: re.Match) -> bool:
    """True when a key-like query value names a variable (`${QUANDL_API_KEY}`) instead of a key."""
    return match.group(2).startswith("${")
