"""Scaffolding for the parity tests and the torch benches, not used by the library itself:
torch twins of the zoo (``torch_reference``), pytorch-grad-cam's import without torchvision
(``pytorch_grad_cam_import``) and the localisation metrics in NumPy (``host_metrics``)."""
