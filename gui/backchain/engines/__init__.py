"""The outside world: qemu-img, qcow2 headers, QMP and the runner (no Qt here)."""
