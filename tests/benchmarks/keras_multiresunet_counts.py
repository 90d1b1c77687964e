"""What Keras's ``summary()`` prints for the authors' MultiResUNet: the figures tests/test_multiresunet.py holds.

Not collected by pytest and not run by ``make test``: it needs Keras, which the lessons do not.
In a separate environment (Keras 3 on the torch backend needs no TensorFlow):

    python -m venv /tmp/keras && /tmp/keras/bin/pip install torch==2.13.0 keras
    KERAS_BACKEND=torch /tmp/keras/bin/python tests/benchmarks/keras_multiresunet_counts.py OFFICIAL.py

``OFFICIAL.py`` is ``tensorflow/MultiResUNet.py`` of github.com/nibtehaz/MultiResUNet (unchanged since
its first commit, f8273f9, 2019). Its layer functions are run as they are; only its imports, written
for standalone Keras 2 (``keras.layers.advanced_activations``, ``keras.utils.vis_utils``, which Keras 3
no longer has), are replaced by the Keras 3 names of the same layers, and its ``main()`` is not run.
On 2026-12-07 Keras 3.15.1 printed, for 3 and for 1 input channels:

    Total params: 7,262,750   Trainable params: 7,238,228   Non-trainable params: 24,522
    Total params: 7,262,504   Trainable params: 7,237,982   Non-trainable params: 24,522
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")


def main(path: str) -> None:
    import keras
    from keras.layers import (Activation, BatchNormalization, Conv2D, Conv2DTranspose, Input, MaxPooling2D, add,
                              concatenate)
    from keras.models import Model

    source = open(path).read()
    body = source[source.index("def conv2d_bn"):source.index("def main()")]  # the layer functions, as written
    namespace = dict(Input=Input, Conv2D=Conv2D, MaxPooling2D=MaxPooling2D, Conv2DTranspose=Conv2DTranspose,
                     concatenate=concatenate, BatchNormalization=BatchNormalization, Activation=Activation, add=add,
                     Model=Model)
    exec(compile(body, path, "exec"), namespace)
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
    for channels in (3, 1):
        model = namespace["MultiResUnet"](128, 128, channels)
        trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
        frozen = sum(int(w.numpy().size) for w in model.non_trainable_weights)
        print(f"MultiResUnet(128, 128, {channels}): total {trainable + frozen:,}, trainable {trainable:,}, "
              f"non-trainable {frozen:,}")
        printed = []
        model.summary(print_fn=lambda text, **_: printed.append(text))
        print("\n".join(line for line in "\n".join(printed).splitlines() if "params:" in line))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
