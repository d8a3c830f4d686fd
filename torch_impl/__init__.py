"""The NumPy reference's math in PyTorch, with hand-written gradients that mirror the derivation. Imports torch,
numpy and reference_numpy only (its shared scalar checks, PARAM_NAMES, the .npz reader).

The files, in reading order:

    softmax.py, neural_net.py,   mirrors of their twins in reference_numpy/, name for name (``diff
    linear_classifier.py         reference_numpy/softmax.py torch_impl/softmax.py`` shows only the NumPy -> PyTorch
                                 idioms), plus the autograd Functions SoftmaxLoss and TwoLayerLoss that deliver the
                                 hand-written gradients through autograd's front door (``loss.backward()``)
    autograd_twin.py             the plain-autograd versions they are proven equal to
    backward_ops.py              the pieces the Functions and the fused step share (forward, formulas (4), (5))
    fused_step.py                fused_sgd_step: a whole SGD step without autograd, the update inside the GEMMs
    cuda_graph.py                GraphedSteps (tables, position counter, capture, replay) and GraphedSGDSteps:
                                 K SGD steps captured in one CUDA graph
    batched.py                   M nets in one step (the sweep)
    validation.py                the input checks, one clear line per bad argument

The last five have no NumPy twin: they are the fast paths, each proven equal to the readable one by a test.
"""
