"""The one resumable training checkpoint of every torch generator (image models, causal LMs).

:func:`save` writes, atomically (a ``.part`` file renamed over the old one), every module's and
optimiser's state, the step, torch's global RNG (dropout) and any named ``torch.Generator``
(batch sampling, noise) as one safetensors file, with the generator's parameters in its
metadata. :func:`load` puts them all back, refusing a file made with other parameters (only
``resumable`` ones may change) or with other ``expect``-ed metadata (e.g. the training data's
sha256). Nothing is unpickled: a checkpoint is tensors and JSON.

So an interrupted fit continued later ends bit-identical to an unbroken one, as long as the
training loop draws all its randomness from the saved streams.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from detect.core.errors import ConfigError

#: parameters a checkpoint written before they existed was made with
LEGACY_DEFAULTS: dict[str, Any] = {"device": "cpu"}
FILE = "train-state.safetensors"


def _prefix(kind: str, name: str) -> str:
    # an unnamed module / optimiser keeps the bare "mod." / "opt." keys LM checkpoints had
    return f"{kind}.{name}." if name else f"{kind}."


def save(path: Path, step: int, *, modules: dict[str, Any], optimizers: dict[str, Any],
         params: dict[str, Any], rngs: dict[str, Any] | None = None,
         tensors: dict[str, Any] | None = None, metadata: dict[str, str] | None = None) -> None:
    """Write the training state after ``step`` steps to ``path`` (see the module docstring)."""
    import torch
    from safetensors.torch import save_file

    t: dict[str, Any] = {}
    for name, m in modules.items():
        t.update({f"{_prefix('mod', name)}{k}": v for k, v in m.state_dict().items()})
    for name, opt in optimizers.items():
        for pid, st in opt.state_dict()["state"].items():
            for k, v in st.items():
                t[f"{_prefix('opt', name)}{pid}.{k}"] = v if torch.is_tensor(v) else \
                    torch.tensor(v)
    t["step"] = torch.tensor([step])
    t["rng.torch"] = torch.get_rng_state()
    for name, gen in (rngs or {}).items():
        t[f"rng.{name}"] = gen.get_state()
    t.update(tensors or {})
    # clone: tied weights (an LM's input/output embedding) would otherwise share storage
    t = {k: v.detach().cpu().contiguous().clone() for k, v in t.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    save_file(t, str(tmp), metadata={"params": json.dumps(params), **(metadata or {})})
    os.replace(tmp, path)


def load(path: Path, *, modules: dict[str, Any], optimizers: dict[str, Any],
         params: dict[str, Any], resumable: tuple[str, ...] = (),
         rngs: dict[str, Any] | None = None,
         expect: dict[str, tuple[str, str]] | None = None) -> tuple[int, dict[str, Any]]:
    """Restore the state :func:`save` wrote into ``modules``, ``optimizers`` and ``rngs``;
    returns (step, every tensor of the file). ``expect``: metadata key -> (value, what the
    error says when the file's differs)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    saved = json.loads(meta.get("params", "{}"))
    fixed = [k for k in params if k not in resumable]
    if {k: saved.get(k, LEGACY_DEFAULTS.get(k)) for k in fixed} != {k: params[k] for k in fixed}:
        raise ConfigError(f"{path}: checkpoint was made with other parameters {saved}; "
                          "delete it or use the same recipe")
    for key, (value, what) in (expect or {}).items():
        if meta.get(key) != value:
            raise ConfigError(f"{path}: checkpoint was {what}")
    t = load_file(str(path))
    for name, m in modules.items():
        pre = _prefix("mod", name)
        m.load_state_dict({k[len(pre):]: v for k, v in t.items() if k.startswith(pre)})
    for name, opt in optimizers.items():
        pre = _prefix("opt", name)
        sd = opt.state_dict()
        state: dict[int, dict[str, Any]] = {}
        for k, v in t.items():
            if k.startswith(pre):
                pid, key = k[len(pre):].split(".", 1)
                state.setdefault(int(pid), {})[key] = v
        sd["state"] = state
        opt.load_state_dict(sd)
    if "rng.torch" in t:  # image checkpoints made before it was saved lack it
        torch.set_rng_state(t["rng.torch"])
    for name, gen in (rngs or {}).items():
        gen.set_state(t[f"rng.{name}"])
    return int(t["step"][0]), t
