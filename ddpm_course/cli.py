"""The ``ddpm-course`` command: train, export, sample, demo, build-notebooks.

Every sub-command ends with a one-line error and exit status 1 on a bad file or value (argparse
itself exits with status 2 on an unknown flag), never with a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ddpm-course", description="ddpm-course: train, sample and demo.")
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train a U-Net with the simple loss (resumable; torchrun for DDP)")
    t.add_argument("--config", default="mnist", help="U-Net config: mnist, cifar10 or tiny")
    t.add_argument("--data", default=None,
                   help="mnist_subset (bundled, default for mnist/tiny), mnist, fashion_mnist, cifar10")
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--out", required=True, help="run folder (checkpoints, grids, log.jsonl)")
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--sample-every", type=int, default=0, help="0: at each checkpoint, -1: never")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--ema-decay", type=float, default=0.999)
    t.add_argument("--label-dropout", type=float, default=0.1)
    t.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="auto: bf16 (fp16 without bf16 support) on CUDA, fp32 elsewhere")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-progress", action="store_true")

    e = sub.add_parser("export", help="EMA weights of a checkpoint -> ddpm_course/weights/NAME.safetensors")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--name", required=True)
    e.add_argument("--weights-dir", default=None, help="default: the package's weights folder")
    return p


def cmd_train(a) -> int:
    from .train import TrainConfig, train

    data = a.data or ("cifar10" if a.config == "cifar10" else "mnist_subset")
    cfg = TrainConfig(model=a.config, data=data, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                      warmup=a.warmup, ema_decay=a.ema_decay, label_dropout=a.label_dropout,
                      precision=a.precision, seed=a.seed, checkpoint_every=a.checkpoint_every,
                      sample_every=a.sample_every, command=shlex.join(["ddpm-course", *a.argv]))
    last = train(cfg, a.out, resume=a.resume, progress=not a.no_progress)
    print(last)
    return 0


def cmd_export(a) -> int:
    from .pretrained import export

    path = export(a.checkpoint, a.name, a.weights_dir, command=shlex.join(["ddpm-course", *a.argv]))
    print(path)
    return 0


COMMANDS = {"train": cmd_train, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = _parser().parse_args(argv)
    a.argv = argv
    try:
        return COMMANDS[a.cmd](a)
    except KeyboardInterrupt:
        print("ddpm-course: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError, FileNotFoundError) as err:
        print(f"ddpm-course {a.cmd}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())


