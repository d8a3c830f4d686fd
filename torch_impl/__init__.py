"""The NumPy reference's math in PyTorch, with hand-written gradients that mirror the derivation.

Each file mirrors its twin in reference_numpy/ name for name; ``diff reference_numpy/softmax.py
torch_impl/softmax.py`` shows only the NumPy -> PyTorch idioms. The autograd Functions at the end of softmax.py and
neural_net.py deliver the hand-written gradients through autograd's front door (``loss.backward()``), and
autograd_twin.py holds the plain-autograd versions they are proven equal to.
"""
