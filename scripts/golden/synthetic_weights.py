#!/usr/bin/env python3
"""Synthetic weights and prompts, recomputed with Python integers: an independent implementation
of include/cascade/synthetic.h's generator (no numpy, standard library only). Prints the values
that tests/test_synthetic.cpp pins (kGoldenWeights and the prompts):

    python3 scripts/golden/synthetic_weights.py
"""
import math
import struct

M = 2**64 - 1
GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64's increment


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def mix64(z):  # SplitMix64's output function
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)


def tensor_key(seed, name):
    h = 0xCBF29CE484222325  # FNV-1a of the name
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & M
    return mix64(seed ^ mix64(h))


SCALE = f32(0.02 / (4 * math.sqrt((65536**2 - 1) / 12)))


def weight(seed, name, i):
    if name.endswith("_norm.weight"):
        return 1.0
    z = mix64((tensor_key(seed, name) + (i + 1) * GOLDEN) & M)
    s = (z & 0xFFFF) + ((z >> 16) & 0xFFFF) + ((z >> 32) & 0xFFFF) + (z >> 48)
    # A product of two floats is exact in a double; rounding it to f32 is the f32 product.
    return f32(f32(2 * s - 4 * 65535) * SCALE)


def prompt(n, vocab, seed):
    key = mix64(seed ^ 0x70726F6D7074)
    limit = M - M % vocab
    ids, ctr = [], 0
    while len(ids) < n:
        ctr += 1
        z = mix64((key + ctr * GOLDEN) & M)
        if z < limit:
            ids.append(z % vocab)
    return ids


if __name__ == "__main__":
    for seed, name, i in [(1, "token_embd.weight", 0), (1, "blk.1.ffn_up.weight", 777),
                          (2, "token_embd.weight", 0), (1, "output.weight", 16383)]:
        print(f'{{{seed}, "{name}", {i}, {weight(seed, name, i).hex()}f}},')
    print("prompt(8, 256, 1) =", prompt(8, 256, 1))
    print("prompt(8, 32000, 1) =", prompt(8, 32000, 1))
