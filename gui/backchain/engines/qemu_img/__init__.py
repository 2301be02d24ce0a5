"""qemu_img engine package."""
