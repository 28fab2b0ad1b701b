"""Which torch device a detector's network runs on.

Every torch model in ``detect`` takes ``device: str = "cpu"`` as a constructor argument, so
the choice is in ``get_params`` and in the saved config (a model saved before the argument
existed loads with the default). The string is parsed by ``torch.device`` itself and checked
against what this machine has, so a typo or a missing GPU fails when the detector is made,
naming the detector and the device, rather than deep inside the first forward pass.
"""

from __future__ import annotations

from typing import Any

from detect.core.errors import ConfigError


def parse_device(device: Any, where: str) -> Any:
    """``device`` parsed by ``torch.device`` (a ConfigError naming ``where`` when it is not a
    device string); whether this machine has it is :func:`torch_device`'s question."""
    import torch

    if not isinstance(device, str):
        raise ConfigError(f"{where}: device must be a string such as 'cpu' or 'cuda:0', got "
                          f"{device!r}")
    try:
        return torch.device(device)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ConfigError(f"{where}: device {device!r} is not a torch device ({e})") from None


def torch_device(device: Any, where: str) -> Any:
    """``device`` as a ``torch.device`` that exists here; a ConfigError naming ``where`` and
    the device otherwise."""
    import torch

    dev = parse_device(device, where)
    if dev.type == "cpu":
        return dev
    if dev.type == "mps":
        ok, count = torch.backends.mps.is_available(), 1
    else:
        backend = getattr(torch, dev.type, None)  # torch.cuda, torch.xpu, ...
        available = getattr(backend, "is_available", None)
        ok = bool(available and available())
        count = int(backend.device_count()) if ok and hasattr(backend, "device_count") else 1
    if not ok:
        raise ConfigError(f"{where}: device {device!r} is not available on this machine "
                          f"(no usable {dev.type} backend); use device='cpu'")
    if dev.index is not None and dev.index >= count:
        raise ConfigError(f"{where}: device {device!r} does not exist ({count} {dev.type} "
                          "device(s) here)")
    return dev


def module_tensors(module: Any, prefix: str = "model.") -> dict[str, Any]:
    """A torch module's state as numpy arrays under ``prefix`` (what a detector saves)."""
    # contiguous: a module kept channels-last for inference saves the same row-major arrays
    return {f"{prefix}{k}": v.detach().cpu().contiguous().numpy()
            for k, v in module.state_dict().items()}


def load_module(module: Any, tensors: dict[str, Any], device: Any, what: str,
                prefix: str = "model.") -> Any:
    """``module`` with the ``prefix`` tensors loaded (strictly: a ModelError saying ``what``
    when they do not fit), in eval mode, on ``device``."""
    import torch

    from detect.core.errors import ModelError

    sd = {k.removeprefix(prefix): torch.from_numpy(v) for k, v in tensors.items()
          if k.startswith(prefix)}
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{what}: {e}") from None
    return module.eval().to(device)
