"""Sparse inference for pruned DeepSpeech2 models (Narang et al. 2017, section 6: smaller and faster for real).

sparse.py   SparseMatrix: CSR / block-CSR with compact indices, fp32 / fp16 / int8 (per-row scales) values
format.py   the deploy file (torch.save of plain tensors, read with weights_only=True)
export.py   checkpoint -> deploy bundle, size tables
native.py   build (once per source, flags and CPU) and load the C++ kernels in csrc/
kernels.py  sparse product and recurrences: native C++ with OpenMP, or torch's CSR as the fallback
planner.py  per layer, sparse or dense by measured time
layers.py   the sparse DS2 RNN, GRU and FC layers
runtime.py  load_deployed(): DeepSpeech2 with sparse layers, plus its front-end
"""
