#!/usr/bin/env python3
"""Writes SIZE bytes of benchmark input to stdout: 1 MiB blocks alternating between table-like text
(a COPY of rows with numbers, dates and words) and random bytes. Deterministic for a given seed."""
import os
import random
import sys

size = int(sys.argv[1])
rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
words = ("heirloom recipe garden letter summer harbour violin quince lantern orchard winter "
         "ledger atlas thimble saffron copper").split()
block = 1 << 20
out = sys.stdout.buffer
written = 0
row = 0
i = 0
while written < size:
    n = min(block, size - written)
    if i % 2 == 0:
        lines = []
        length = 0
        while length < n:
            row += 1
            line = "%d\tuser%d\t2026-%02d-%02d %02d:%02d:%02d+00\t%s\t%.2f\n" % (
                row, rng.randrange(100000), rng.randrange(1, 13), rng.randrange(1, 29),
                rng.randrange(24), rng.randrange(60), rng.randrange(60),
                " ".join(rng.choices(words, k=rng.randrange(3, 12))), rng.random() * 1000)
            lines.append(line)
            length += len(line)
        data = "".join(lines).encode()[:n]
    else:
        data = os.urandom(n)
    out.write(data)
    written += n
    i += 1
