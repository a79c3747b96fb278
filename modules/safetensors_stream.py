"""Reading and writing ``.safetensors`` files one tensor at a time, without memory-mapping the file.

Format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N, N bytes of
JSON ``{key: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``, then the raw
little-endian tensor bytes; offsets are relative to the end of the header. Nothing in the file is executed.

Why not ``safetensors.safe_open``: it maps the whole file, and every page a tensor read touches stays in the
process's resident set until the file is closed, so reading a 6.7 GB file shows 6.7 GB of RSS on top of
the copy being built. Here each tensor is read with ``readinto`` into its own buffer, converted, and freed
before the next one: a loader that casts as it goes holds one tensor of the file at a time.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Optional

import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """The file is not a readable safetensors file."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple
    begin: int
    end: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


@dataclass(frozen=True)
class Header:
    path: str
    tensors: dict          # key -> TensorInfo
    metadata: dict
    data_start: int

    def shapes(self) -> dict:
        return {k: v.shape for k, v in self.tensors.items()}

    def in_file_order(self, keys: Optional[Iterable[str]] = None) -> list:
        keys = self.tensors if keys is None else keys
        return sorted(keys, key=lambda k: self.tensors[k].begin)


def read_header(path: str) -> Header:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise SafetensorsError("the file is shorter than a safetensors header")
        (length,) = struct.unpack("<Q", raw)
        if length < 2 or length > MAX_HEADER or 8 + length > size:
            raise SafetensorsError(f"the header length {length} does not fit a safetensors file of {size} bytes")
        try:
            body = json.loads(f.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafetensorsError(f"the header is not JSON ({e})") from None
    if not isinstance(body, dict):
        raise SafetensorsError("the header is not a JSON object")
    metadata = body.pop("__metadata__", None) or {}
    data_start, data_size = 8 + length, size - 8 - length
    tensors = {}
    for key, entry in body.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(int(s) for s in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"the header entry of {key!r} is malformed") from None
        if dtype not in DTYPES:
            raise SafetensorsError(f"{key!r} has dtype {dtype}, which this reader does not know")
        numel = 1
        for s in shape:
            numel *= s
        itemsize = torch.tensor([], dtype=DTYPES[dtype]).element_size()
        if not (0 <= begin <= end <= data_size) or end - begin != numel * itemsize:
            raise SafetensorsError(f"the data offsets of {key!r} do not match its shape and the file size")
        tensors[key] = TensorInfo(dtype, shape, int(begin), int(end))
    return Header(path, tensors, metadata, data_start)


def read_tensor(f: BinaryIO, header: Header, key: str) -> torch.Tensor:
    """One tensor, read into a fresh buffer (``f`` opened with ``open(path, "rb", buffering=0)``)."""
    info = header.tensors[key]
    buf = torch.empty(info.end - info.begin, dtype=torch.uint8)
    f.seek(header.data_start + info.begin)
    view = memoryview(buf.numpy())
    done = 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            raise SafetensorsError(f"the file ended inside {key!r}")
        done += n
    return buf.view(info.torch_dtype).reshape(info.shape)


def write_streamed(path: str, entries: list, make, metadata: Optional[dict] = None) -> None:
    """Write a safetensors file tensor by tensor: ``entries`` is ``[(key, torch.dtype, shape)]`` (file order),
    ``make(key)`` returns that tensor (contiguous, of that dtype and shape) when its turn comes."""
    header, offset = {}, 0
    for key, dtype, shape in entries:
        numel = 1
        for s in shape:
            numel *= int(s)
        nbytes = numel * torch.tensor([], dtype=dtype).element_size()
        header[key] = {"dtype": NAMES[dtype], "shape": [int(s) for s in shape], "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for key, dtype, shape in entries:
            t = make(key)
            if t.dtype != dtype or tuple(t.shape) != tuple(int(s) for s in shape):
                raise ValueError(f"{key}: made {t.dtype} {tuple(t.shape)}, declared {dtype} {tuple(shape)}")
            f.write(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().data)
