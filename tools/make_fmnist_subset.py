#!/usr/bin/env python3
"""Write the Fashion-MNIST subset embedded in the `allmlp` binary.

Takes the first 5,000 training and first 1,000 test images and labels from the
Debian `dataset-fashion-mnist` files (gzip IDX) and writes them, gzip IDX again,
to crates/cli/data/fashion-mnist-subset/. Deterministic: gzip mtime is 0 and no
file name is stored, so rerunning gives byte-identical files.

Usage: python3 tools/make_fmnist_subset.py [SRC_DIR] [OUT_DIR]
"""
import gzip
import os
import struct
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "crates", "cli", "data", "fashion-mnist-subset")
SPLITS = [("train", 5000), ("t10k", 1000)]


def read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    got = struct.unpack(">I", data[:4])[0]
    if got != magic:
        sys.exit(f"{path}: magic 0x{got:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    dims = list(struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim]))
    return dims, data[4 + 4 * ndim:]


def write_idx(path, magic, dims, body):
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * len(dims), *dims)
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
            f.write(header + body)


def main():
    os.makedirs(OUT, exist_ok=True)
    for split, n in SPLITS:
        dims, body = read_idx(os.path.join(SRC, f"{split}-images-idx3-ubyte.gz"), 0x803)
        assert dims[0] >= n and dims[1:] == [28, 28], dims
        write_idx(os.path.join(OUT, f"{split}-images-idx3-ubyte.gz"), 0x803, [n, 28, 28], body[:n * 784])
        dims, body = read_idx(os.path.join(SRC, f"{split}-labels-idx1-ubyte.gz"), 0x801)
        assert dims[0] >= n, dims
        write_idx(os.path.join(OUT, f"{split}-labels-idx1-ubyte.gz"), 0x801, [n], body[:n])
        print(f"{split}: {n} images and labels")


if __name__ == "__main__":
    main()
