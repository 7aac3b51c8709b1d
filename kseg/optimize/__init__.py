"""Edge optimization with tensorflow-model-optimization (the only place kseg uses tfmot).

- :mod:`kseg.optimize.qat`: quantization-aware training for every zoo architecture, with
  QuantizeConfigs for the layers tfmot does not cover and a report of anything left in float.
- :mod:`kseg.optimize.prune`: magnitude pruning with a per-layer policy, 2:4 sparsity, strip and
  per-layer report; pruning-preserving QAT keeps the zeros in the INT8 file.
- :mod:`kseg.optimize.cluster`: sparsity-preserving weight clustering (a few shared values per
  kernel, pruned zeros kept) so the INT8 file gzips smaller.
- :mod:`kseg.optimize.distill`: teacher -> student distillation (per-pixel KD, attention transfer)
  with a same-budget student-alone baseline.
- :mod:`kseg.optimize.recipe`: YAML recipes chaining distill -> prune -> cluster -> qat -> convert.
- :mod:`kseg.optimize.cli`: the ``kseg optimize`` click group.

Importing this package does not import TensorFlow; the submodules above (except ``cli``) do.
"""
