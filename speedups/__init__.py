"""Faster versions of sam2's modules, switched into a model built by sam2 itself.

Each module here rewrites some of sam2's modules as subclasses that add no weights, and switches a
model's instances to them in place (`module_classes.switch_classes`); `model_loading.prepare` chooses
which of them a tracker runs, and logs how many modules each switched:

- `encoder_overheads`: the image encoder's constant position encodings kept per input size, its first
  stage on contiguous memory (same bits; every device and precision);
- `frame_shared`: the first memory-attention layer's self-attention once per frame for all objects,
  its residual stream contiguous (same bits; every device and precision);
- `fast_attention`: attention as chunked bf16 matrix products (the fast path, SAM2_FAST_ATTENTION);
- `onednn_linear`: oneDNN's linear with fused activations, for bf16 on the CPU (the fast path).
"""
