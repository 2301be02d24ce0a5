"""libvirt engine package."""
