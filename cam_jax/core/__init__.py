"""The ground floor: pieces every other room shares and that import nothing else of cam_jax
(bad-input errors, per-image flags, the device mesh, comma-separated lists)."""
