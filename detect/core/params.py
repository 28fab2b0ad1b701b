"""The scikit-learn convention shared by detectors, generators and attacks: constructor
arguments are the configuration, stored under the same names, so ``get_params`` can read them
back for ``config.json`` and ``repr`` shows exactly what would be saved."""

from __future__ import annotations

import inspect
from typing import Any


class HasParams:
    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters
                if k != "self" and sig.parameters[k].kind is not inspect.Parameter.VAR_KEYWORD}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
