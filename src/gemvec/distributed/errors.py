"""Ray's errors as gemvec's: the user's mistake (a bad column, a missing model) keeps its message.

Ray passes an actor's exception back as text (a UDF's error inside ``UserCodeException``, a
failed constructor inside ``ActorDiedError``), so a gemvec error raised on a node is rebuilt
from the line ``gemvec.errors.NameError: message`` of that text.
"""

from __future__ import annotations

import re

from gemvec import errors
from gemvec.errors import GemvecError

_GEMVEC_ERROR = re.compile(r"^gemvec\.errors\.(\w+): (.+)$", re.MULTILINE)
_ANY_ERROR = re.compile(r"^[\w.]+(?:Error|Exception|Exit): .+$", re.MULTILINE)


class RayJobError(GemvecError, RuntimeError):
    """A Ray job failed for a reason of Ray's own (a node lost for good, the cluster gone)."""

    http_status = 502
    code = "ray_job_failed"


def ray_failure(exc: BaseException) -> GemvecError:
    """The GemvecError an actor raised, from Ray's wrappers; else a RayJobError saying what failed."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, GemvecError):
            return cause
        cause = getattr(cause, "cause", None) or cause.__cause__
    text = str(exc)
    for name, message in reversed(_GEMVEC_ERROR.findall(text)):
        kind = getattr(errors, name, None)
        if isinstance(kind, type) and issubclass(kind, GemvecError) and kind is not errors.MissingExtraError:
            return kind(message)
    lines = _ANY_ERROR.findall(text) or [line for line in text.splitlines() if line.strip()]
    summary = lines[-1] if lines else type(exc).__name__
    return RayJobError(
        f"The Ray job failed: {summary} What was committed is kept; run the same command again to carry "
        "on (the Ray logs, `ray logs`, say more)."
    )
