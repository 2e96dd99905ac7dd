"""Functions request templates may call: ``{hmac_sha1(secrets.key, meta.now, auth.username)}``.

The built-in ones sign and hash what APIs ask for (Marketo's ``requestSignature``,
SugarCRM's md5 password); plugins add theirs through the ``register_template_functions``
hook, collected by :class:`~leadrelay.engine.plugins.Plugins` and handed to connectors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class TemplateFunction:
    """A function templates may call: ``fn(*texts) -> text``, taking ``min_args`` to
    ``max_args`` (None: any number) arguments."""

    name: str
    fn: Callable[..., str]
    min_args: int = 1
    max_args: int | None = None

    def usage(self) -> str:
        """``hmac_sha1(2 or more arguments)``, for messages."""
        if self.max_args == self.min_args:
            count = f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"
        elif self.max_args is None:
            count = f"{self.min_args} or more arguments"
        else:
            count = f"{self.min_args} to {self.max_args} arguments"
        return f"{self.name}({count})"


def _hmac(digest: str) -> Callable[..., str]:
    def sign(key: str, *message: str) -> str:
        return hmac.new(key.encode(), "".join(message).encode(), digest).hexdigest()
    return sign


def _hash(digest: str) -> Callable[..., str]:
    return lambda *text: hashlib.new(digest, "".join(text).encode()).hexdigest()


#: The functions every template may call.
BUILTIN_FUNCTIONS: dict[str, TemplateFunction] = {
    f.name: f for f in (
        TemplateFunction("hmac_sha1", _hmac("sha1"), 2),
        TemplateFunction("hmac_sha256", _hmac("sha256"), 2),
        TemplateFunction("md5", _hash("md5")),
        TemplateFunction("sha1", _hash("sha1")),
        TemplateFunction("sha256", _hash("sha256")),
        TemplateFunction("base64", lambda *t: base64.b64encode("".join(t).encode()).decode()),
    )
}
