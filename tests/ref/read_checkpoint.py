#!/usr/bin/python3
"""read_checkpoint.py: reads a conflux checkpoint with h5py into a PyTorch state_dict.

Run with Debian's interpreter (it has h5py and torch):

    /usr/bin/python3 tests/ref/read_checkpoint.py CKPT.h5 \\
        [--expect NAME=67x8 ...]        # parameter NAME must exist with that shape ("" = scalar)
        [--alias ALIAS=TARGET ...]      # /params/ALIAS must be a hard link to /params/TARGET
        [--optim NAME]                  # /optim must exist with attribute name=NAME

It checks the layout of docs/design.md ("Checkpoint"): the root attributes format, version,
model, step, samples_seen, created (ISO 8601 UTC) and writer; /config readable as text;
every /params dataset float32; /optim/<param>/<slot> shaped like its parameter. Then it
builds the state_dict with nothing but dataset reads, prints one line per tensor, and
exits 0; on any problem it prints "read_checkpoint: error: ..." and exits 1.
"""
import argparse
import datetime
import sys

import h5py
import numpy as np
import torch


class Bad(Exception):
    pass


def text(v):
    """An attribute or dataset value (fixed- or variable-length string) as str."""
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8")
    if isinstance(v, str):
        return v
    raise Bad(f"expected a string, got {type(v).__name__}")


def integer(v, what):
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(())[()]
    if not isinstance(v, (int, np.integer)):
        raise Bad(f"{what} is not an integer ({type(v).__name__})")
    return int(v)


def shape_arg(s):
    return tuple(int(d) for d in s.split("x")) if s else ()


def check(path, args):
    with h5py.File(path, "r") as f:
        a = f.attrs
        for key in ("format", "version", "model", "step", "samples_seen", "created", "writer"):
            if key not in a:
                raise Bad(f"missing root attribute {key}")
        if text(a["format"]) != "conflux-checkpoint":
            raise Bad(f"format is {text(a['format'])!r}, not 'conflux-checkpoint'")
        if integer(a["version"], "version") != 1:
            raise Bad(f"unsupported version {a['version']}")
        model = text(a["model"])
        step = integer(a["step"], "step")
        samples = integer(a["samples_seen"], "samples_seen")
        created = text(a["created"])
        try:
            datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise Bad(f"created {created!r} is not ISO 8601 UTC (YYYY-MM-DDTHH:MM:SSZ)")
        writer = text(a["writer"])
        if "config" not in f or not isinstance(f["config"], h5py.Dataset):
            raise Bad("missing dataset /config")
        config = text(f["config"][()])
        print(f"checkpoint {path}: model={model} step={step} samples_seen={samples} "
              f"created={created} writer={writer!r} config={len(config)} chars")

        if "params" not in f:
            raise Bad("missing group /params")
        params = f["params"]
        # The whole conversion: one dataset read per name (aliases included).
        state_dict = {name: torch.from_numpy(np.asarray(ds[()])) for name, ds in params.items()}
        if not state_dict:
            raise Bad("/params is empty")
        for name, ds in params.items():
            if not isinstance(ds, h5py.Dataset):
                raise Bad(f"/params/{name} is not a dataset")
            if ds.dtype != np.float32:
                raise Bad(f"/params/{name} has dtype {ds.dtype}, expected float32")
            t = state_dict[name]
            if tuple(t.shape) != ds.shape or t.dtype != torch.float32:
                raise Bad(f"/params/{name}: tensor {tuple(t.shape)} {t.dtype} from {ds.shape}")
        # Hard links: h5py datasets compare equal when they are the same object.
        links = {}
        names = sorted(params)
        for i, n in enumerate(names):
            for m in names[i + 1:]:
                if params[n] == params[m]:
                    links.setdefault(n, []).append(m)
        for name in names:
            t = state_dict[name]
            tied = f"  (same object as {', '.join(links[name])})" if name in links else ""
            print(f"  {name:78s} {str(tuple(t.shape)):16s} {str(t.dtype):14s} "
                  f"sum={t.double().sum().item():.6g}{tied}")

        for e in args.expect:
            name, _, shp = e.partition("=")
            if name not in state_dict:
                raise Bad(f"expected parameter {name} is missing")
            if tuple(state_dict[name].shape) != shape_arg(shp):
                raise Bad(f"{name} has shape {tuple(state_dict[name].shape)}, "
                          f"expected {shape_arg(shp)}")
        for e in args.alias:
            alias, _, target = e.partition("=")
            if alias not in params or target not in params:
                raise Bad(f"alias {alias} or its target {target} is missing")
            if params[alias] != params[target]:
                raise Bad(f"/params/{alias} is not a hard link to /params/{target}")
            if not torch.equal(state_dict[alias], state_dict[target]):
                raise Bad(f"{alias} and {target} differ")

        if "optim" in f:
            g = f["optim"]
            for key in ("name", "step"):
                if key not in g.attrs:
                    raise Bad(f"/optim lacks attribute {key}")
            oname, ostep = text(g.attrs["name"]), integer(g.attrs["step"], "/optim step")
            slots = set()
            for pname, sub in g.items():
                if pname not in state_dict:
                    raise Bad(f"/optim/{pname} has no parameter /params/{pname}")
                for slot, ds in sub.items():
                    if ds.dtype != np.float32 or ds.shape != tuple(state_dict[pname].shape):
                        raise Bad(f"/optim/{pname}/{slot}: {ds.dtype} {ds.shape}, expected "
                                  f"float32 {tuple(state_dict[pname].shape)}")
                    slots.add(slot)
            print(f"  optimizer {oname} step {ostep}: slots {sorted(slots)} for {len(g)} tensors")
            if args.optim is not None and oname != args.optim:
                raise Bad(f"optimizer is {oname!r}, expected {args.optim!r}")
        elif args.optim is not None:
            raise Bad("missing group /optim")

        for gname, g in f.items():
            if gname in ("params", "optim", "config") or not isinstance(g, h5py.Group):
                continue
            for key, ds in g.items():
                if isinstance(ds, h5py.Dataset):
                    print(f"  extra /{gname}/{key}: {ds.dtype} {ds.shape}")
                else:
                    print(f"  extra /{gname}/{key}/: group of {len(ds)}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--expect", action="append", default=[], metavar="NAME=D0xD1")
    ap.add_argument("--alias", action="append", default=[], metavar="ALIAS=TARGET")
    ap.add_argument("--optim", default=None)
    args = ap.parse_args()
    try:
        return check(args.checkpoint, args)
    except (Bad, OSError, KeyError) as e:
        print(f"read_checkpoint: error: {e} ({args.checkpoint})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
