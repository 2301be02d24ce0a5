"""qemu-img's argv for encrypted layers, as plain data (iotest 198's --image-opts)."""

from __future__ import annotations

from backchain.core.graph import Layer
from backchain.engines.qemu_img.steps import image_opts, secret_id


def test_image_opts_give_every_encrypted_layer_the_secret_and_double_commas() -> None:
    chain = [
        Layer("/vm/a,b.qcow2", "qcow2", 1, encrypted=True),
        Layer("/vm/mid.qcow2", "qcow2", 1),
        Layer("/vm/base.qcow2", "qcow2", 1, encrypted=True),
    ]
    assert image_opts(chain, "sec0") == (
        "driver=qcow2,file.filename=/vm/a,,b.qcow2,encrypt.key-secret=sec0,"
        "backing.backing.encrypt.key-secret=sec0"
    )
    assert secret_id(("secret,id=sec0,file=/k",)) == "sec0"
    assert secret_id(()) is None
