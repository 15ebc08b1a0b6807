#!/usr/bin/env python3
"""Writes a small random-weight Gemma 3 vision projector (mmproj) GGUF for the test model.

    make-projector.py OUT.gguf [--text-model MODEL.gguf]

The file has the metadata keys, tensor names, types and shapes that llama.cpp's multimodal loader
(tools/mtmd/clip.cpp, projector type "gemma3", graph tools/mtmd/models/siglip.cpp) reads from a
real `mmproj-*.gguf` written by convert_hf_to_gguf.py (conversion/gemma.py, Gemma3VisionModel),
shrunk as far as that loader allows: one SigLIP encoder block, hidden size 64, 128x128 images in
4x4 patches. Gemma 3's pooling (an average pool over n_merge x n_merge patches, n_merge = 4 unless
`clip.vision.projector.scale_factor` says otherwise) turns the 32x32 patches into 8x8 = 64 image
tokens, each projected to the text model's embedding size. The weights are nonsense, the path is
the real one: image decode and resize, patch embedding, attention, pooling, projection, image
tokens in the prompt.

Only the standard library: no numpy, so the test environment needs nothing installed for it, and
the random numbers come from a fixed-seed splitmix64 written out here (not `random`, not numpy),
so the bytes -- and the sha256 -- are the same on every machine and Python version.

With --text-model, the text model's `<arch>.embedding_length` must equal PROJECTION_DIM
(llama.cpp refuses a projector whose output size differs from the text model's embeddings).
"""

import argparse
import hashlib
import math
import struct
import sys

SEED = 12  # issue #12; change it and the cache key (this file's hash) changes with it

# Text side: Gemma 3 270M (gemma3.embedding_length).
PROJECTION_DIM = 640

# Vision side, as small as clip.cpp accepts for gemma3:
IMAGE_SIZE = 128  # every image is resized (bilinear) to IMAGE_SIZE x IMAGE_SIZE
PATCH_SIZE = 4  # -> 32 x 32 patches; the pool needs patches-per-side divisible by N_MERGE
N_MERGE = 4  # clip.cpp's default for gemma3, so no scale_factor key (as in real Gemma 3 files)
N_EMBD = 64  # encoder hidden size
N_HEAD = 4  # head dim 16
N_FF = 256  # must differ from N_EMBD: clip.cpp swaps ffn_up/down when ffn_down's ne[0] == n_embd
N_LAYER = 1
EPS = 1e-6  # SigLIP's layer_norm_eps, as the converter writes it
IMAGE_MEAN = [0.5, 0.5, 0.5]  # Gemma 3's preprocessor_config.json
IMAGE_STD = [0.5, 0.5, 0.5]

N_PATCHES_SIDE = IMAGE_SIZE // PATCH_SIZE
N_POS = N_PATCHES_SIDE * N_PATCHES_SIDE
N_IMAGE_TOKENS = (N_PATCHES_SIDE // N_MERGE) ** 2
assert IMAGE_SIZE % PATCH_SIZE == 0 and N_PATCHES_SIDE % N_MERGE == 0
assert N_EMBD % N_HEAD == 0 and N_FF != N_EMBD

# GGUF (gguf-py/gguf/constants.py).
GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32  # GGUF_DEFAULT_ALIGNMENT
T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64 = 4, 5, 6, 7, 8, 9, 10
GGML_F32, GGML_F16 = 0, 1
LLAMA_FTYPE_MOSTLY_F16 = 1


class SplitMix64:
    """Deterministic uniform floats in [-1, 1) from a 64-bit seed (Steele et al., splitmix64)."""

    MASK = (1 << 64) - 1

    def __init__(self, seed):
        self.state = seed & self.MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & self.MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return z ^ (z >> 31)

    def uniform(self, n, scale):
        # 53 random bits -> [0, 1) exactly representable, then to [-scale, scale).
        return [((self.next_u64() >> 11) * (2.0 / (1 << 53)) - 1.0) * scale for _ in range(n)]


def tensors(rng):
    """(name, ggml ne (innermost first), ggml type, values) in the converter's naming and types:
    embeddings F32 (Gemma3VisionModel.tensor_force_quant), 2-D matrices F16 (an F16 mmproj),
    norms and biases F32."""

    def rand(shape, fan_in):
        n = math.prod(shape)
        return rng.uniform(n, 1.0 / math.sqrt(fan_in))

    out = []
    # conv2d kernel [patch, patch, 3, n_embd] and its bias: the patch embedding.
    out.append(("v.patch_embd.weight", [PATCH_SIZE, PATCH_SIZE, 3, N_EMBD], GGML_F32,
                rand([PATCH_SIZE, PATCH_SIZE, 3, N_EMBD], PATCH_SIZE * PATCH_SIZE * 3)))
    out.append(("v.patch_embd.bias", [N_EMBD], GGML_F32, [0.0] * N_EMBD))
    out.append(("v.position_embd.weight", [N_EMBD, N_POS], GGML_F32, rand([N_EMBD, N_POS], N_EMBD)))
    for il in range(N_LAYER):
        p = f"v.blk.{il}"
        for norm in ("ln1", "ln2"):
            out.append((f"{p}.{norm}.weight", [N_EMBD], GGML_F32, [1.0] * N_EMBD))
            out.append((f"{p}.{norm}.bias", [N_EMBD], GGML_F32, [0.0] * N_EMBD))
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            out.append((f"{p}.{proj}.weight", [N_EMBD, N_EMBD], GGML_F16, rand([N_EMBD, N_EMBD], N_EMBD)))
            out.append((f"{p}.{proj}.bias", [N_EMBD], GGML_F32, [0.0] * N_EMBD))
        # fc1: n_embd -> n_ff, fc2: n_ff -> n_embd (ggml ne is [in, out]).
        out.append((f"{p}.ffn_up.weight", [N_EMBD, N_FF], GGML_F16, rand([N_EMBD, N_FF], N_EMBD)))
        out.append((f"{p}.ffn_up.bias", [N_FF], GGML_F32, [0.0] * N_FF))
        out.append((f"{p}.ffn_down.weight", [N_FF, N_EMBD], GGML_F16, rand([N_FF, N_EMBD], N_FF)))
        out.append((f"{p}.ffn_down.bias", [N_EMBD], GGML_F32, [0.0] * N_EMBD))
    out.append(("v.post_ln.weight", [N_EMBD], GGML_F32, [1.0] * N_EMBD))
    out.append(("v.post_ln.bias", [N_EMBD], GGML_F32, [0.0] * N_EMBD))
    # Gemma 3's projector: RMS norm (the converter stores weight + 1, so 1.0 is the identity),
    # then x @ W with W [n_embd, text_embd] in PyTorch, i.e. ggml ne [text_embd, n_embd].
    out.append(("mm.soft_emb_norm.weight", [N_EMBD], GGML_F32, [1.0] * N_EMBD))
    out.append(("mm.input_projection.weight", [PROJECTION_DIM, N_EMBD], GGML_F16,
                rand([PROJECTION_DIM, N_EMBD], N_EMBD)))
    return out


def metadata():
    """The keys convert_hf_to_gguf.py writes for a Gemma 3 mmproj (MmprojModel and
    Gemma3VisionModel.set_gguf_parameters)."""
    return [
        ("general.architecture", T_STRING, "clip"),
        ("general.type", T_STRING, "mmproj"),
        ("general.name", T_STRING, "vlmctl test projector for Gemma 3 270M (random weights)"),
        ("general.description", T_STRING,
         f"generated by vlmctl scripts/lib/make-projector.py, seed {SEED}; output is nonsense"),
        ("general.file_type", T_U32, LLAMA_FTYPE_MOSTLY_F16),
        ("clip.projector_type", T_STRING, "gemma3"),
        ("clip.has_vision_encoder", T_BOOL, True),
        ("clip.use_gelu", T_BOOL, True),
        ("clip.vision.projection_dim", T_U32, PROJECTION_DIM),
        ("clip.vision.image_size", T_U32, IMAGE_SIZE),
        ("clip.vision.patch_size", T_U32, PATCH_SIZE),
        ("clip.vision.embedding_length", T_U32, N_EMBD),
        ("clip.vision.feed_forward_length", T_U32, N_FF),
        ("clip.vision.block_count", T_U32, N_LAYER),
        ("clip.vision.attention.head_count", T_U32, N_HEAD),
        ("clip.vision.attention.layer_norm_epsilon", T_F32, EPS),
        ("clip.vision.image_mean", T_ARRAY, (T_F32, IMAGE_MEAN)),
        ("clip.vision.image_std", T_ARRAY, (T_F32, IMAGE_STD)),
    ]


def gguf_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_value(vtype, value):
    if vtype == T_STRING:
        return gguf_string(value)
    if vtype == T_U32:
        return struct.pack("<I", value)
    if vtype == T_F32:
        return struct.pack("<f", value)
    if vtype == T_BOOL:
        return struct.pack("<B", 1 if value else 0)
    if vtype == T_ARRAY:
        etype, items = value
        return struct.pack("<IQ", etype, len(items)) + b"".join(gguf_value(etype, v) for v in items)
    raise ValueError(f"unsupported GGUF value type {vtype}")


def pad(n):
    return (ALIGNMENT - n % ALIGNMENT) % ALIGNMENT


def gguf_bytes():
    kvs = metadata()
    ts = tensors(SplitMix64(SEED))
    head = bytearray(GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(ts), len(kvs)))
    for key, vtype, value in kvs:
        head += gguf_string(key) + struct.pack("<I", vtype) + gguf_value(vtype, value)
    data = bytearray()
    for name, ne, gtype, values in ts:
        assert len(values) == math.prod(ne), name
        head += gguf_string(name) + struct.pack("<I", len(ne))
        head += b"".join(struct.pack("<Q", d) for d in ne)
        head += struct.pack("<IQ", gtype, len(data))
        # struct's 'e' is IEEE binary16 with round-half-to-even, like numpy's astype(float16).
        data += struct.pack(f"<{len(values)}{'f' if gtype == GGML_F32 else 'e'}", *values)
        data += b"\0" * pad(len(data))
    head += b"\0" * pad(len(head))
    return bytes(head + data), len(ts), len(kvs)


def read_embedding_length(path):
    """`<general.architecture>.embedding_length` from a GGUF's metadata (stops once found)."""
    with open(path, "rb") as f:
        def read(fmt):
            size = struct.calcsize(fmt)
            b = f.read(size)
            if len(b) != size:
                raise ValueError(f"{path}: truncated GGUF header")
            return struct.unpack(fmt, b)

        def read_str():
            (n,) = read("<Q")
            return f.read(n).decode("utf-8", "replace")

        scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B",
                  10: "<Q", 11: "<q", 12: "<d"}

        def read_value(vtype):
            if vtype == T_STRING:
                return read_str()
            if vtype == T_ARRAY:
                etype, n = read("<IQ")
                return [read_value(etype) for _ in range(n)]
            return read(scalar[vtype])[0]

        if f.read(4) != GGUF_MAGIC:
            raise ValueError(f"{path}: not a GGUF file")
        _version, _n_tensors, n_kv = read("<IQQ")
        arch = None
        for _ in range(n_kv):
            key = read_str()
            (vtype,) = read("<I")
            value = read_value(vtype)  # the tokenizer's big arrays come after the arch's keys
            if key == "general.architecture":
                arch = value
            if arch is not None and key == f"{arch}.embedding_length":
                return arch, value
    raise ValueError(f"{path}: no <arch>.embedding_length key")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="path of the GGUF to write")
    ap.add_argument("--text-model", help="check the projection size against this GGUF's metadata")
    args = ap.parse_args()

    if args.text_model:
        arch, n_embd = read_embedding_length(args.text_model)
        if n_embd != PROJECTION_DIM:
            sys.exit(f"error: {args.text_model}: {arch}.embedding_length is {n_embd}, but this "
                     f"generator projects to {PROJECTION_DIM}; change PROJECTION_DIM")
        print(f"[mmproj] text model {arch}.embedding_length = {n_embd}: matches", file=sys.stderr)

    blob, n_tensors, n_kv = gguf_bytes()
    with open(args.out, "wb") as f:
        f.write(blob)
    print(f"[mmproj] wrote {args.out}: {len(blob)} bytes, {n_tensors} tensors, {n_kv} keys, "
          f"sha256 {hashlib.sha256(blob).hexdigest()}; gemma3 projector, {IMAGE_SIZE}x{IMAGE_SIZE} "
          f"images, {N_POS} patches, {N_IMAGE_TOKENS} image tokens of {PROJECTION_DIM}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
