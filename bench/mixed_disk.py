#!/usr/bin/env python3
"""The benchmarks' data, in the current folder: image.raw, a 2 GiB disk of 1 MiB pieces in the
repeating pattern random, random, zeros, log-like text; changes.txt, the offsets of 1638
scattered 64 KiB-aligned blocks (5%, random.seed(5) picks them); changes.bin, their new random
contents, one 64 KiB block after another."""
import os
import random

line = b"2026-11-22T06:00:00 host kernel: event 00000000 ok\n"
text = (line * ((1 << 20) // len(line) + 1))[: 1 << 20]
with open("image.raw", "wb") as f:
    for p in range(2048):
        k = p % 4
        f.write(os.urandom(1 << 20) if k < 2 else bytes(1 << 20) if k == 2 else text)
random.seed(5)
blocks = sorted(random.sample(range(2048 * 16), 1638))
with open("changes.txt", "w") as out:
    out.write("\n".join(str(b * 65536) for b in blocks) + "\n")
with open("changes.bin", "wb") as f:
    f.write(os.urandom(1638 * 65536))
