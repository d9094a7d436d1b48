"""IDX files (the MNIST format), raw or gzipped, to tensors; and back, for tests and tools."""

from __future__ import annotations

import gzip
import struct

import torch

# IDX type codes -> (torch dtype, big-endian struct code of one element)
_DTYPES: dict[int, tuple[torch.dtype, str]] = {
    0x08: (torch.uint8, "B"),
    0x09: (torch.int8, "b"),
    0x0B: (torch.int16, ">h"),
    0x0C: (torch.int32, ">i"),
    0x0D: (torch.float32, ">f"),
    0x0E: (torch.float64, ">d"),
}
_CODES = {dtype: code for code, (dtype, _) in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    pass


def parse_idx(data: bytes) -> torch.Tensor:
    """Decode an IDX blob (gzip-compressed or not) into a tensor of its declared shape."""
    if data[:2] == _GZIP_MAGIC:
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxFormatError("not an IDX file (bad magic number)")
    type_code, ndim = data[2], data[3]
    if type_code not in _DTYPES:
        raise IdxFormatError(f"unknown IDX element type 0x{type_code:02x}")
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise IdxFormatError("truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header_end])
    dtype, element = _DTYPES[type_code]
    count = 1
    for dim in shape:
        count *= dim
    itemsize = struct.calcsize(element)
    if len(data) - header_end != count * itemsize:
        raise IdxFormatError(
            f"IDX payload has {len(data) - header_end} bytes; shape {shape} needs "
            f"{count * itemsize}"
        )
    payload = bytearray(data[header_end:])
    if itemsize == 1:
        tensor = torch.frombuffer(payload, dtype=dtype) if count else torch.empty(0, dtype=dtype)
    else:
        # IDX is big-endian; swap to native order before viewing.
        tensor = torch.frombuffer(payload, dtype=dtype).view(torch.uint8).view(-1, itemsize)
        tensor = tensor.flip(1).contiguous().view(dtype)
    return tensor.reshape(shape).clone()


def encode_idx(tensor: torch.Tensor, *, compress: bool = False) -> bytes:
    """Encode a tensor as IDX (the inverse of parse_idx)."""
    if tensor.dtype not in _CODES:
        raise IdxFormatError(f"IDX cannot hold {tensor.dtype}")
    header = bytes([0, 0, _CODES[tensor.dtype], tensor.dim()])
    header += struct.pack(f">{tensor.dim()}I", *tensor.shape)
    flat = tensor.contiguous().view(torch.uint8).reshape(tensor.numel(), -1)
    payload = flat.flip(1).contiguous().numpy().tobytes()
    blob = header + payload
    return gzip.compress(blob) if compress else blob
