"""Weights shipped inside the package, checksum-verified.

Each entry is a pair in ``ddpm_course/weights/``: ``<name>.safetensors`` and a manifest ``<name>.json``::

    {"file": "<name>.safetensors", "sha256": "...", "config": {...U-Net config...}, "schedule": {...},
     "command": "...", "steps": N, "wall_time_s": ..., ...}

Files are found next to this module, so loading works from an installed wheel with no repository clone
(as in Colab) and needs no network.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class WeightsError(ValueError):
    """A missing, corrupt or mismatched weights file."""


KINDS = ("unet", "classifier")  # a manifest's "kind"; a U-Net (diffusion model) when it names none


def available(kind: str | None = None) -> list[str]:
    """Names of the shipped weights (manifests present in the weights folder); ``kind``: only the diffusion
    models ("unet", what dc.load_pretrained and ddpm-course sample load) or the "classifier"s."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be None or one of {KINDS}, got {kind!r}")
    names = sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))
    return [n for n in names if kind is None or manifest(n).get("kind", "unet") == kind]


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest(name: str, weights_dir: str | Path | None = None) -> dict:
    """The manifest of shipped weights ``name``."""
    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    path = folder / f"{name}.json"
    if not path.is_file():
        names = sorted(p.stem for p in folder.glob("*.json"))
        raise WeightsError(f"no shipped weights named {name!r}: {path} does not exist (available: {names})")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WeightsError(f"manifest {path} is not valid JSON: {err}") from None
    for key in ("file", "sha256"):
        if key not in meta:
            raise WeightsError(f"manifest {path} lacks the {key!r} entry")
    return meta


def load_state_dict(name: str, weights_dir: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Tensors of shipped weights ``name``, after checking the file's sha256 against its manifest."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    meta = manifest(name, folder)
    path = folder / meta["file"]
    if not path.is_file():
        raise WeightsError(f"weights file {path} (named in {name}.json) does not exist")
    digest = sha256(path)
    if digest != meta["sha256"]:
        raise WeightsError(f"checksum mismatch for {path}: sha256 {digest} but the manifest records "
                           f"{meta['sha256']} (file truncated, corrupt or replaced)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path} is not a readable safetensors file: {err}") from None


def load_pretrained(name: str = "mnist", device: torch.device | str | None = None,
                    weights_dir: str | Path | None = None):
    """``(model, schedule)`` for shipped weights: the EMA weights of the U-Net, in eval mode, on
    ``dc.device()`` unless ``device`` is given. ``model(x, t)`` is unconditional (null label),
    ``model(x, t, y)`` class-conditional; ``model.null_label`` is the null label."""
    from . import device as default_device
    from .train import make_schedule
    from .unet import UNet

    meta = manifest(name, weights_dir)
    if meta.get("kind", "unet") != "unet":
        raise WeightsError(f"{name} is a {meta['kind']}, not a diffusion model; dc.load_pretrained loads "
                           f"{', '.join(available('unet'))}")
    if "config" not in meta:
        raise WeightsError(f"manifest {name}.json has no U-Net 'config': not diffusion-model weights")
    state = load_state_dict(name, weights_dir)
    model = UNet(meta["config"])
    model.load_state_dict(state)
    model = model.to(device if device is not None else default_device()).eval()
    return model, make_schedule(meta.get("schedule", {}))


RECIPE_KEYS = ("lr", "warmup", "lr_schedule", "loss_weighting", "min_snr_gamma", "label_dropout", "grad_clip",
               "weight_decay", "ema_decay", "seed")


def _fine_tuned_from(init: str) -> dict:
    """Manifest entries of a fine-tuning run (train's init_from): what it started from, and the images seen
    in all (the start's own and the fine-tune's); empty for a run from random weights."""
    if not init:
        return {}
    entry = {"init_from": init}
    if init in available():
        start = manifest(init)
        entry.update(init_sha256=start["sha256"], init_images_seen=start.get("images_seen", 0))
    else:
        entry["init_sha256"] = sha256(init)
    return entry


def export(checkpoint: str | Path, name: str, weights_dir: str | Path | None = None,
           command: str | None = None, extra: dict | None = None) -> Path:
    """Write the EMA weights of a training checkpoint as ``<name>.safetensors`` plus ``<name>.json``
    (sha256, model config, schedule, training command and recipe, steps, images seen, wall time, the
    machine it trained on). ``extra``: more manifest entries (e.g. a ``sampling`` recipe). Returns the
    manifest path."""
    from safetensors.torch import save_file

    from .train import load_checkpoint

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or ".." in name:
        raise ValueError(f"name must be a plain file name (letters, digits, _ . -; no folders), got {name!r}")
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt["config"]
    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{name}.safetensors"
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in ckpt["ema"].items()}
    # one metadata entry: safetensors writes several in no fixed order, and the file's sha256 must not vary
    save_file(tensors, str(file), metadata={"source": f"{name}, step {ckpt['step']}"})
    meta = {
        "file": file.name,
        "sha256": sha256(file),
        "bytes": file.stat().st_size,
        "config": cfg["model_config"],
        "schedule": {"schedule": cfg["schedule"], "T": cfg["T"]},
        "weights": "EMA",
        "ema_decay": cfg["ema_decay"],
        "steps": ckpt["step"],
        "batch_size": cfg["batch_size"],
        "data": cfg.get("data", "not recorded in the checkpoint"),
        "precision": cfg.get("precision_used", cfg["precision"]),
        "wall_time_s": round(float(ckpt["wall_time"]), 1),
        "command": cfg.get("command", ""),
        "export_command": command or f"ddpm-course export --checkpoint {checkpoint} --name {name}",
        "parameters": int(sum(v.numel() for v in tensors.values())),
        "images_seen": ckpt["step"] * cfg["batch_size"],
        "recipe": {k: cfg[k] for k in RECIPE_KEYS if k in cfg},
        "machine": ckpt.get("machine", "not recorded in the checkpoint"),
        **_fine_tuned_from(cfg.get("init_from") or ""),
        **(extra or {}),
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path
