"""Scaffolding for the parity tests and the torch benches, not used by the library itself:
torch twins of the zoo (``torch_reference``), pytorch-grad-cam's import without torchvision
(``pytorch_grad_cam_import``), the localisation metrics in NumPy (``host_metrics``) and
chest X-ray files written from known pixels and masks (``xray_files``)."""
